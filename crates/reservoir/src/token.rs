//! Passwords for new connections: IAM auth tokens for DSQL, a static password for PostgreSQL.
//!
//! A token only matters when a connection is opened; an open connection outlives its token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dsql::auth_token::{AuthTokenGenerator, Config as AuthTokenConfig};
use aws_sdk_dsql::config::Region;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// A boxed future, as returned by the object-safe traits of this crate.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A password; its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    #[must_use]
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, to hand to the driver.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Why no password could be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The requested token lifetime is outside what DSQL accepts.
    #[error(
        "token duration {0:?} is out of range: DSQL accepts 15 s to 1 week (604800 s); \
         set dsql.token_duration within that range"
    )]
    DurationOutOfRange(Duration),
    /// No region was given and the AWS config has none.
    #[error("no AWS region for the DSQL auth token: set dsql region (or AWS_REGION)")]
    MissingRegion,
    /// The SDK could not sign a token (usually: no credentials could be resolved).
    #[error("generating a DSQL auth token for {host} failed (are AWS credentials configured?)")]
    Generate {
        /// The cluster endpoint the token was for.
        host: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Hands out the password for each new connection.
pub trait TokenProvider: Send + Sync + fmt::Debug {
    /// The password to use for the connection about to be opened.
    fn password(&self) -> BoxFuture<'_, Result<Password, TokenError>>;
}

/// A fixed password (or none), for local PostgreSQL.
#[derive(Debug, Clone)]
pub struct StaticPassword(Option<Password>);

impl StaticPassword {
    /// Always this password.
    #[must_use]
    pub fn new(password: impl Into<String>) -> Self {
        Self(Some(Password::new(password)))
    }

    /// No password (trust authentication); connections send an empty one if asked.
    #[must_use]
    pub fn none() -> Self {
        Self(None)
    }
}

impl TokenProvider for StaticPassword {
    fn password(&self) -> BoxFuture<'_, Result<Password, TokenError>> {
        let password = self.0.clone().unwrap_or_else(|| Password::new(""));
        Box::pin(async move { Ok(password) })
    }
}

/// The lifetime of generated IAM tokens: 15 s to 1 week, 15 minutes by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenDuration(Duration);

impl TokenDuration {
    /// The shortest lifetime DSQL accepts.
    pub const MIN: Duration = Duration::from_secs(15);
    /// The longest lifetime DSQL accepts (1 week).
    pub const MAX: Duration = Duration::from_secs(604_800);
    /// The SDK's and the CLI's default.
    pub const DEFAULT: Duration = Duration::from_secs(900);

    /// A validated duration.
    ///
    /// # Errors
    /// [`TokenError::DurationOutOfRange`] outside 15 s ..= 1 week, or when not whole seconds.
    pub fn new(duration: Duration) -> Result<Self, TokenError> {
        if duration < Self::MIN || duration > Self::MAX || duration.subsec_nanos() != 0 {
            return Err(TokenError::DurationOutOfRange(duration));
        }
        Ok(Self(duration))
    }

    /// The duration.
    #[must_use]
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Default for TokenDuration {
    fn default() -> Self {
        Self(Self::DEFAULT)
    }
}

/// Settings of an [`IamTokenProvider`].
#[derive(Debug, Clone)]
pub struct IamTokenConfig {
    /// The cluster endpoint, `<id>.dsql.<region>.on.aws` (the host the token is signed for).
    pub host: String,
    /// The database role: `admin` gets a `DbConnectAdmin` token, every other role `DbConnect`.
    pub user: String,
    /// The region; `None` takes the AWS config's.
    pub region: Option<String>,
    /// Token lifetime.
    pub duration: TokenDuration,
}

impl IamTokenConfig {
    /// Settings for `host` as `user`, the AWS config's region and 15-minute tokens.
    #[must_use]
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> Self {
        Self { host: host.into(), user: user.into(), region: None, duration: TokenDuration::default() }
    }
}

/// The part of a token's life after which a fresh one is generated (the fork's 80 %).
const REFRESH_AT: f64 = 0.8;

struct Cached {
    token: Password,
    refresh_at: Instant,
}

/// IAM auth tokens from aws-sdk-dsql's `AuthTokenGenerator` (signing is local, no network call),
/// cached and replaced once 80 % of their lifetime has passed, so every connection gets a token
/// with most of its life ahead.
pub struct IamTokenProvider {
    generator: AuthTokenGenerator,
    sdk_config: SdkConfig,
    admin: bool,
    host: String,
    duration: TokenDuration,
    cache: Mutex<Option<Cached>>,
    metrics: Metrics,
}

impl fmt::Debug for IamTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamTokenProvider")
            .field("host", &self.host)
            .field("admin", &self.admin)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

impl IamTokenProvider {
    /// A provider signing with the credentials (and, unless given, the region) of `sdk_config`.
    ///
    /// # Errors
    /// [`TokenError::MissingRegion`] when neither the settings nor `sdk_config` name a region.
    pub fn new(
        sdk_config: &SdkConfig,
        settings: IamTokenConfig,
        metrics: Metrics,
    ) -> Result<Self, TokenError> {
        let region = settings
            .region
            .map(Region::new)
            .or_else(|| sdk_config.region().cloned())
            .ok_or(TokenError::MissingRegion)?;
        let config = AuthTokenConfig::builder()
            .hostname(settings.host.clone())
            .region(region)
            .expires_in(settings.duration.get().as_secs())
            .build()
            .map_err(|source| TokenError::Generate { host: settings.host.clone(), source })?;
        Ok(Self {
            generator: AuthTokenGenerator::new(config),
            sdk_config: sdk_config.clone(),
            admin: settings.user == "admin",
            host: settings.host,
            duration: settings.duration,
            cache: Mutex::new(None),
            metrics,
        })
    }

    /// Signs a new token now, bypassing the cache.
    ///
    /// # Errors
    /// [`TokenError::Generate`] when signing fails (typically: no credentials).
    pub async fn generate(&self) -> Result<Password, TokenError> {
        let signed = if self.admin {
            self.generator.db_connect_admin_auth_token(&self.sdk_config).await
        } else {
            self.generator.db_connect_auth_token(&self.sdk_config).await
        };
        match signed {
            Ok(token) => {
                self.metrics.token_refreshes.inc();
                Ok(Password::new(token.as_str()))
            }
            Err(source) => {
                self.metrics.token_refresh_failures.inc();
                Err(TokenError::Generate { host: self.host.clone(), source })
            }
        }
    }

    async fn cached_or_new(&self) -> Result<Password, TokenError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some(cached) = cache.as_ref().filter(|c| now < c.refresh_at) {
            self.metrics.token_cache_hits.inc();
            return Ok(cached.token.clone());
        }
        self.metrics.token_cache_misses.inc();
        let token = self.generate().await?;
        let refresh_at = now + self.duration.get().mul_f64(REFRESH_AT);
        *cache = Some(Cached { token: token.clone(), refresh_at });
        Ok(token)
    }
}

impl TokenProvider for IamTokenProvider {
    fn password(&self) -> BoxFuture<'_, Result<Password, TokenError>> {
        Box::pin(self.cached_or_new())
    }
}
