//! Which sign-in providers a deployment offers, read once from the environment: GitHub and
//! Google by their client credentials, and any number of OpenID Connect issuers listed in
//! `OIDC_PROVIDERS`. A provider without settings does not exist; one with only some of them
//! stops the cold start with an error that names the missing variable.
//!
//! `OIDC_PROVIDERS` lists the providers by the name their variables carry: `corp` (or `CORP`)
//! is configured by `OIDC_CORP_ISSUER`, `OIDC_CORP_CLIENT_ID`, `OIDC_CORP_CLIENT_SECRET` and
//! optionally `OIDC_CORP_NAME`, `OIDC_CORP_SCOPES` and `OIDC_CORP_ID`. Its id (in the routes and
//! in `account.providerId`) is `OIDC_CORP_ID`, else the name in lower case: a deployment
//! template, which cannot make a variable's name from a parameter, gives its one provider a
//! fixed name and the id as a value.

use std::net::IpAddr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{AddressLimit, ConfigError};

/// Everything about signing in through other providers.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// The configured providers: GitHub, Google, then the OpenID Connect issuers in the order
    /// `OIDC_PROVIDERS` lists them.
    pub providers: Vec<ProviderSettings>,
    /// Origins besides `FRONTEND_URL`'s that a sign-in may return the reader to
    /// (`SITE_ORIGINS`, comma-separated), e.g. a second site or a preview deployment.
    pub site_origins: Vec<String>,
    /// The API's public base URL (`API_URL`, no trailing `/`); the callback a provider sends
    /// readers back to is this and `/api/auth/oauth/{provider}/callback`. Unset: the domain
    /// API Gateway was called on (`https://`), or locally the request's `Host`.
    pub api_url: Option<String>,
    /// Starts and callbacks per client address (`OAUTH_MAX_PER_ADDRESS`,
    /// `OAUTH_WINDOW_SECS`), each counted on its own.
    pub limit: AddressLimit,
    /// Whether a provider's verified address links to an existing account only when that
    /// account's own address is verified too (`ACCOUNT_LINKING_REQUIRE_LOCAL_EMAIL_VERIFIED`,
    /// default true, as Better-Auth's `accountLinking.requireLocalEmailVerified`): otherwise
    /// whoever registered an address they do not own, before its owner arrived, would share
    /// the owner's account.
    pub require_local_email_verified: bool,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            site_origins: Vec::new(),
            api_url: None,
            limit: AddressLimit { per_address: 100, window: Duration::from_secs(3600) },
            require_local_email_verified: true,
        }
    }
}

/// One provider a reader may sign in with.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The id in the routes and in `account.providerId` (`github`, `google`, or the id given
    /// in `OIDC_PROVIDERS`, as a Better-Auth frontend names the same provider).
    pub id: String,
    /// What a sign-in button says.
    pub name: String,
    /// The client id the provider issued to this deployment.
    pub client_id: String,
    /// Its client secret.
    pub client_secret: SecretString,
    /// How the provider is spoken to.
    pub protocol: Protocol,
}

/// OAuth 2.0 with GitHub's user API, or OpenID Connect.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// GitHub (or GitHub Enterprise Server): OAuth 2.0; who the reader is comes from its API.
    GitHub {
        /// Where `/login/oauth/authorize` and `/login/oauth/access_token` are (`GITHUB_URL`).
        web: Url,
        /// The REST API's base (`GITHUB_API_URL`), for `/user` and `/user/emails`.
        api: Url,
    },
    /// OpenID Connect: endpoints from the issuer's discovery document, the reader from a
    /// verified ID token.
    OpenIdConnect {
        /// The issuer, exactly as its ID tokens name it in `iss`.
        issuer: String,
        /// Another spelling of the issuer its tokens may carry (Google's `accounts.google.com`).
        issuer_alias: Option<String>,
        /// The scopes asked for; `openid` among them.
        scopes: Vec<String>,
    },
}

impl ProviderSettings {
    /// `oauth2` or `oidc`, as `GET /api/auth/oauth/providers` shows it.
    pub fn kind(&self) -> &'static str {
        match self.protocol {
            Protocol::GitHub { .. } => "oauth2",
            Protocol::OpenIdConnect { .. } => "oidc",
        }
    }
}

/// Ids a configured OpenID Connect provider may not take: the built-in providers' and
/// Better-Auth's password account's.
const RESERVED_IDS: &[&str] = &["github", "google", "credential"];

impl SignInSettings {
    /// Reads the settings through `get`, which answers `None` for an unset or blank variable.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut settings = Self::default();
        if let Some((client_id, client_secret)) = credentials(get, "GITHUB")? {
            let web = endpoint(get, "GITHUB_URL", "https://github.com")?;
            let api = endpoint(get, "GITHUB_API_URL", "https://api.github.com")?;
            settings.providers.push(ProviderSettings {
                id: "github".into(),
                name: "GitHub".into(),
                client_id,
                client_secret,
                protocol: Protocol::GitHub { web, api },
            });
        }
        if let Some((client_id, client_secret)) = credentials(get, "GOOGLE")? {
            let issuer = endpoint(get, "GOOGLE_ISSUER", "https://accounts.google.com")?;
            let issuer = issuer.as_str().trim_end_matches('/').to_owned();
            // Google's ID tokens name their issuer with or without the scheme.
            let issuer_alias = issuer.strip_prefix("https://").map(str::to_owned);
            settings.providers.push(ProviderSettings {
                id: "google".into(),
                name: "Google".into(),
                client_id,
                client_secret,
                protocol: Protocol::OpenIdConnect { issuer, issuer_alias, scopes: default_scopes() },
            });
        }
        for name in get("OIDC_PROVIDERS").iter().flat_map(|list| list.split(',')).map(str::trim) {
            if name.is_empty() {
                continue;
            }
            settings.providers.push(openid_provider(get, name, &settings.providers)?);
        }
        settings.site_origins = get("SITE_ORIGINS")
            .iter()
            .flat_map(|list| list.split(','))
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(site_origin)
            .collect::<Result<_, _>>()?;
        if let Some(raw) = get("API_URL") {
            let url = Url::parse(raw.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                .filter(|u| u.query().is_none() && u.fragment().is_none())
                .ok_or_else(|| invalid("API_URL", "must be an http(s) URL without query or fragment"))?;
            settings.api_url = Some(url.as_str().trim_end_matches('/').to_owned());
        }
        let number = |name: &str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |raw| {
                raw.trim().parse().map_err(|e| invalid(name, &format!("is not a whole number ({e})")))
            })
        };
        settings.limit = AddressLimit {
            per_address: number("OAUTH_MAX_PER_ADDRESS", settings.limit.per_address as u64)? as i64,
            window: Duration::from_secs(number("OAUTH_WINDOW_SECS", settings.limit.window.as_secs())?),
        };
        if let Some(raw) = get("ACCOUNT_LINKING_REQUIRE_LOCAL_EMAIL_VERIFIED") {
            settings.require_local_email_verified = raw.trim().parse().map_err(|_| {
                invalid("ACCOUNT_LINKING_REQUIRE_LOCAL_EMAIL_VERIFIED", "must be true or false")
            })?;
        }
        Ok(settings)
    }

    /// The provider with this id, if it is configured.
    pub fn provider(&self, id: &str) -> Option<&ProviderSettings> {
        self.providers.iter().find(|p| p.id == id)
    }
}

/// `{PREFIX}_CLIENT_ID` and `{PREFIX}_CLIENT_SECRET`: both, or neither (the provider is off).
fn credentials(
    get: &dyn Fn(&str) -> Option<String>,
    prefix: &str,
) -> Result<Option<(String, SecretString)>, ConfigError> {
    let (id_name, secret_name) = (format!("{prefix}_CLIENT_ID"), format!("{prefix}_CLIENT_SECRET"));
    match (get(&id_name), get(&secret_name)) {
        (None, None) => Ok(None),
        (Some(id), Some(secret)) => Ok(Some((id.trim().to_owned(), secret.trim().to_owned().into()))),
        (Some(_), None) => Err(missing(&secret_name, &id_name)),
        (None, Some(_)) => Err(missing(&id_name, &secret_name)),
    }
}

fn missing(name: &str, because: &str) -> ConfigError {
    ConfigError::SignInProvider {
        name: name.to_owned(),
        reason: format!("is not set, but {because} is: a sign-in provider needs its client id and secret"),
    }
}

fn invalid(name: &str, reason: &str) -> ConfigError {
    ConfigError::SignInProvider { name: name.to_owned(), reason: reason.to_owned() }
}

/// An OpenID Connect provider named in `OIDC_PROVIDERS`: `OIDC_<NAME>_ISSUER`, `_CLIENT_ID` and
/// `_CLIENT_SECRET` are required; `_ID`, `_NAME` and `_SCOPES` are optional.
fn openid_provider(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    earlier: &[ProviderSettings],
) -> Result<ProviderSettings, ConfigError> {
    let named_well = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !named_well {
        return Err(invalid(
            "OIDC_PROVIDERS",
            &format!("names {name:?}: a name has 1-32 letters, digits, hyphens or underscores"),
        ));
    }
    let prefix = format!("OIDC_{}", name.to_ascii_uppercase().replace('-', "_"));
    let id_name = format!("{prefix}_ID");
    let id =
        get(&id_name).map_or_else(|| name.to_ascii_lowercase().replace('_', "-"), |id| id.trim().to_owned());
    let well_formed = (1..=32).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-');
    if !well_formed {
        return Err(invalid(
            &id_name,
            &format!("is {id:?}: an id has 1-32 lower-case letters, digits or hyphens"),
        ));
    }
    if RESERVED_IDS.contains(&id.as_str()) || earlier.iter().any(|p| p.id == id) {
        return Err(invalid(&id_name, &format!("is {id:?}, the id of another provider")));
    }
    let issuer_name = format!("{prefix}_ISSUER");
    let issuer = get(&issuer_name).ok_or_else(|| {
        invalid(
            &issuer_name,
            &format!("is not set, but OIDC_PROVIDERS names {name:?}: the issuer's URL is required"),
        )
    })?;
    let issuer = endpoint(get, &issuer_name, &issuer)?.as_str().trim_end_matches('/').to_owned();
    let Some((client_id, client_secret)) = credentials(get, &prefix)? else {
        return Err(invalid(
            &format!("{prefix}_CLIENT_ID"),
            &format!("is not set, but OIDC_PROVIDERS names {name:?}: a client id and secret are required"),
        ));
    };
    let scopes = match get(&format!("{prefix}_SCOPES")) {
        None => default_scopes(),
        Some(list) => {
            let scopes: Vec<String> =
                list.split([' ', ',']).filter(|s| !s.is_empty()).map(str::to_owned).collect();
            if !scopes.iter().any(|s| s == "openid") {
                return Err(invalid(&format!("{prefix}_SCOPES"), "must include openid"));
            }
            scopes
        }
    };
    Ok(ProviderSettings {
        id: id.to_owned(),
        name: get(&format!("{prefix}_NAME")).map_or_else(|| id.to_owned(), |n| n.trim().to_owned()),
        client_id,
        client_secret,
        protocol: Protocol::OpenIdConnect { issuer, issuer_alias: None, scopes },
    })
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"].map(String::from).to_vec()
}

/// The URL in `name` (else `default`): https, or plain http on this machine only, where a
/// test's or a developer's provider runs; without query or fragment.
fn endpoint(get: &dyn Fn(&str) -> Option<String>, name: &str, default: &str) -> Result<Url, ConfigError> {
    let raw = get(name).unwrap_or_else(|| default.to_owned());
    let url = Url::parse(raw.trim()).map_err(|e| invalid(name, &format!("is not a URL ({e})")))?;
    let secure = match url.scheme() {
        "https" => true,
        "http" => is_loopback(&url),
        _ => false,
    };
    if !secure || url.host().is_none() {
        return Err(invalid(
            name,
            "must be an https URL (plain http only on loopback: 127.0.0.1, ::1, localhost)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid(name, "must not carry a query, a fragment or credentials"));
    }
    Ok(url)
}

/// True for a URL on this machine: `localhost`, or a loopback address.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// A site origin of `SITE_ORIGINS`: scheme, host and port only, as a browser spells it.
fn site_origin(raw: &str) -> Result<String, ConfigError> {
    let url = Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .filter(|u| u.path() == "/" && u.query().is_none() && u.fragment().is_none())
        .ok_or_else(|| {
            invalid("SITE_ORIGINS", &format!("lists {raw:?}: an origin is scheme://host[:port]"))
        })?;
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<SignInSettings, ConfigError> {
        let vars: Vec<(String, String)> =
            vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        SignInSettings::from_lookup(&move |name: &str| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.trim().is_empty())
        })
    }

    #[test]
    fn without_settings_there_is_no_provider() {
        let none = settings(&[]).unwrap();
        assert!(none.providers.is_empty());
        assert_eq!(none.limit.per_address, 100);
        assert!(none.require_local_email_verified);
    }

    #[test]
    fn github_google_and_openid_providers_in_order() {
        let all = settings(&[
            ("GITHUB_CLIENT_ID", "gh-id"),
            ("GITHUB_CLIENT_SECRET", "gh-secret"),
            ("GOOGLE_CLIENT_ID", "g-id"),
            ("GOOGLE_CLIENT_SECRET", "g-secret"),
            ("OIDC_PROVIDERS", "corp, school-2"),
            ("OIDC_CORP_ISSUER", "https://login.corp.example/realms/main/"),
            ("OIDC_CORP_CLIENT_ID", "corp-id"),
            ("OIDC_CORP_CLIENT_SECRET", "corp-secret"),
            ("OIDC_CORP_NAME", "Corp SSO"),
            ("OIDC_SCHOOL_2_ISSUER", "http://127.0.0.1:8080"),
            ("OIDC_SCHOOL_2_CLIENT_ID", "s-id"),
            ("OIDC_SCHOOL_2_CLIENT_SECRET", "s-secret"),
            ("OIDC_SCHOOL_2_SCOPES", "openid email"),
        ])
        .unwrap();
        let ids: Vec<&str> = all.providers.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["github", "google", "corp", "school-2"]);
        let Protocol::GitHub { web, api } = &all.providers[0].protocol else { panic!() };
        assert_eq!((web.as_str(), api.as_str()), ("https://github.com/", "https://api.github.com/"));
        assert_eq!(all.providers[0].client_secret.expose_secret(), "gh-secret");
        let Protocol::OpenIdConnect { issuer, issuer_alias, .. } = &all.providers[1].protocol else {
            panic!()
        };
        assert_eq!(
            (issuer.as_str(), issuer_alias.as_deref()),
            ("https://accounts.google.com", Some("accounts.google.com"))
        );
        let corp = all.provider("corp").unwrap();
        assert_eq!((corp.name.as_str(), corp.kind()), ("Corp SSO", "oidc"));
        let Protocol::OpenIdConnect { issuer, scopes, .. } = &corp.protocol else { panic!() };
        assert_eq!(issuer, "https://login.corp.example/realms/main");
        assert_eq!(scopes, &["openid", "email", "profile"]);
        let Protocol::OpenIdConnect { scopes, .. } = &all.provider("school-2").unwrap().protocol else {
            panic!()
        };
        assert_eq!(scopes, &["openid", "email"]);
        assert_eq!(all.providers[0].kind(), "oauth2");
    }

    #[test]
    fn a_half_configured_provider_names_what_is_missing() {
        for (vars, named) in [
            (&[("GITHUB_CLIENT_ID", "x")][..], "GITHUB_CLIENT_SECRET is not set"),
            (&[("GOOGLE_CLIENT_SECRET", "x")][..], "GOOGLE_CLIENT_ID is not set"),
            (&[("OIDC_PROVIDERS", "corp")][..], "OIDC_CORP_ISSUER is not set"),
            (
                &[("OIDC_PROVIDERS", "corp"), ("OIDC_CORP_ISSUER", "https://id.example")][..],
                "OIDC_CORP_CLIENT_ID is not set",
            ),
            (
                &[
                    ("OIDC_PROVIDERS", "corp"),
                    ("OIDC_CORP_ISSUER", "https://id.example"),
                    ("OIDC_CORP_CLIENT_ID", "c"),
                ][..],
                "OIDC_CORP_CLIENT_SECRET is not set",
            ),
            (&[("OIDC_PROVIDERS", "Corp!")][..], "OIDC_PROVIDERS names"),
            (&[("OIDC_PROVIDERS", "github")][..], "OIDC_GITHUB_ID is \"github\", the id of another"),
            (&[("OIDC_PROVIDERS", "sso"), ("OIDC_SSO_ID", "Corp")][..], "OIDC_SSO_ID is \"Corp\""),
        ] {
            let err = settings(vars).unwrap_err().to_string();
            assert!(err.starts_with(named), "{vars:?}: {err}");
        }
    }

    #[test]
    fn a_provider_is_named_by_its_variables_and_may_carry_another_id() {
        let s = settings(&[
            ("OIDC_PROVIDERS", "SSO"),
            ("OIDC_SSO_ID", "corp"),
            ("OIDC_SSO_ISSUER", "https://id.example"),
            ("OIDC_SSO_CLIENT_ID", "c"),
            ("OIDC_SSO_CLIENT_SECRET", "s"),
        ])
        .unwrap();
        assert_eq!((s.providers[0].id.as_str(), s.providers[0].name.as_str()), ("corp", "corp"));
        let twice = settings(&[
            ("OIDC_PROVIDERS", "a,b"),
            ("OIDC_A_ISSUER", "https://a.example"),
            ("OIDC_A_CLIENT_ID", "c"),
            ("OIDC_A_CLIENT_SECRET", "s"),
            ("OIDC_B_ID", "a"),
        ]);
        assert!(twice.unwrap_err().to_string().starts_with("OIDC_B_ID is \"a\""));
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        let with = |issuer: &str| {
            settings(&[
                ("OIDC_PROVIDERS", "corp"),
                ("OIDC_CORP_ISSUER", issuer),
                ("OIDC_CORP_CLIENT_ID", "c"),
                ("OIDC_CORP_CLIENT_SECRET", "s"),
            ])
        };
        for fine in [
            "https://id.example",
            "http://127.0.0.1:9000",
            "http://[::1]:9000/realm",
            "http://localhost:3001",
        ] {
            assert!(with(fine).is_ok(), "{fine}");
        }
        for refused in [
            "http://id.example",
            "http://10.0.0.1",
            "ftp://id.example",
            "https://id.example/?a=b",
            "not a url",
        ] {
            let err = with(refused).unwrap_err().to_string();
            assert!(err.starts_with("OIDC_CORP_ISSUER"), "{refused}: {err}");
        }
        let github = [
            ("GITHUB_CLIENT_ID", "x"),
            ("GITHUB_CLIENT_SECRET", "y"),
            ("GITHUB_API_URL", "http://api.example"),
        ];
        assert!(settings(&github).unwrap_err().to_string().starts_with("GITHUB_API_URL"));
    }

    #[test]
    fn site_origins_api_url_and_limits() {
        let s = settings(&[
            ("SITE_ORIGINS", "https://book.example, http://localhost:5173"),
            ("API_URL", "https://api.book.example/"),
            ("OAUTH_MAX_PER_ADDRESS", "7"),
            ("OAUTH_WINDOW_SECS", "60"),
            ("ACCOUNT_LINKING_REQUIRE_LOCAL_EMAIL_VERIFIED", "false"),
        ])
        .unwrap();
        assert_eq!(s.site_origins, ["https://book.example", "http://localhost:5173"]);
        assert_eq!(s.api_url.as_deref(), Some("https://api.book.example"));
        assert_eq!((s.limit.per_address, s.limit.window), (7, Duration::from_secs(60)));
        assert!(!s.require_local_email_verified);
        assert!(settings(&[("SITE_ORIGINS", "https://book.example/path")]).is_err());
        assert!(settings(&[("API_URL", "ftp://x")]).is_err());
    }
}
