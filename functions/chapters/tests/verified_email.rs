//! `REQUIRE_VERIFIED_EMAIL`: with a model configured, a reader whose address is not verified
//! gets 403 `email_unverified` from model personalization, and the model once they verify it
//! through the link of their sign-up's e-mail. The model is a local stub server.

use crate::common;

use std::sync::Arc;

use common::{import_fixture, python_reader};
use primer_shared::AppState;
use primer_shared::infra::model::{ModelClient, ModelConfig, TokenUsage};
use primer_shared::test_util::model_stub::completion;
use primer_shared::test_util::{TestApp, test_config};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ADAPTED: &str = "# First Steps\n\nA gentler start.\n\n## Reading a sensor\n\n### In Python\n\nRead it at 10 Hz.\n\n## Acting\n\nMove slowly.\n";

#[sqlx::test(migrator = "primer_shared::infra::db::MIGRATOR")]
async fn an_unverified_reader_is_asked_to_verify_before_the_model_personalizes(pool: PgPool) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            ADAPTED,
            Some(TokenUsage { prompt_tokens: 700, completion_tokens: 300 }),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let mut config = test_config();
    config.usage.require_verified_email = true;
    let url = format!("{}/v1", server.uri()).parse().unwrap();
    let client =
        ModelClient::new(ModelConfig::new("sk-test".to_owned().into(), url, "editor-small")).unwrap();
    let app =
        TestApp::with_state(AppState::new(config, pool).with_model(Some(Arc::new(client))), chapters::router);
    import_fixture(app.pool()).await;
    let (reader, _) = python_reader(&app, "reader@example.com").await;

    let refused = app.get("/api/chapters/1/personalized?format=json", Some(&reader.access_token)).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert_eq!(refused.error_code(), "email_unverified");
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("/api/auth/email/verify/send"));

    let token = app.verification_mail("reader@example.com").token;
    app.accounts().verify_email(&token, &app.client()).await.expect("the e-mailed token verifies");
    let served = app.get("/api/chapters/1/personalized?format=json", Some(&reader.access_token)).await;
    assert_eq!(served.status, 200, "{}", served.text());
    assert_eq!(served.json()["engine"], "model");
}
