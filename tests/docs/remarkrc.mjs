// remark's settings for the documentation check (scripts/docs-check).
import remarkGfm from "remark-gfm";
import remarkValidateLinks from "remark-validate-links";

export default {
  plugins: [
    remarkGfm,
    // Local links and anchors only: no repository, so nothing is resolved against GitHub and
    // nothing is fetched.
    [remarkValidateLinks, { repository: false }],
  ],
};
