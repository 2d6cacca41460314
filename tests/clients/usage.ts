// What a site's TypeScript writes with the types openapi-typescript generates from openapi.json
// (scripts/openapi-clients puts them in ./primer.ts beside this file, then runs tsc --strict on
// both): a wrong path, body or field here fails CI.
import type { components, paths } from "./primer";

type User = components["schemas"]["User"];
type ApiError = components["schemas"]["Error"];
type LoginRequest = paths["/api/auth/login"]["post"]["requestBody"]["content"]["application/json"];
type SignedIn = paths["/api/auth/login"]["post"]["responses"][200]["content"]["application/json"];
type ProfilePatch = paths["/api/profile"]["patch"]["requestBody"]["content"]["application/merge-patch+json"];
type Exchange = paths["/api/conversations/{id}/messages"]["post"]["responses"][201]["content"]["application/json"];
type RetryAfter = components["responses"]["QuotaExceeded"]["headers"]["Retry-After"];
type RequestId = components["headers"]["RequestId"];

/** An error answer, with the two headers the API exposes to pages. */
export class PrimerError extends Error {
  constructor(
    readonly body: ApiError,
    readonly requestId: RequestId | null,
    readonly retryAfter: RetryAfter | null,
  ) {
    super(`${body.error.code}: ${body.error.message}`);
  }
}

async function call<T>(base: string, method: string, path: string, body?: unknown, token?: string): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    const retryAfter = response.headers.get("retry-after");
    throw new PrimerError((await response.json()) as ApiError, response.headers.get("x-request-id"), retryAfter === null ? null : Number(retryAfter));
  }
  return (await response.json()) as T;
}

export async function signIn(base: string, credentials: LoginRequest): Promise<{ user: User; accessToken: string }> {
  const { user, session } = await call<SignedIn>(base, "POST", "/api/auth/login", credentials);
  return { user, accessToken: session.access_token };
}

export async function ask(base: string, token: string, conversationId: string, content: string): Promise<string> {
  const { reply } = await call<Exchange>(base, "POST", `/api/conversations/${conversationId}/messages`, { content }, token);
  return reply.is_error ? `failed: ${reply.error_details?.code ?? "unknown"}` : reply.content;
}

export const addLocomotion: ProfilePatch = { learning_goals: ["locomotion"], hardware_context: { specifications: { gpu: "RTX4090" } } };
