//! One renewal attempt: refresh → login → provision (create `k8s-operator`, or reset its password) → login,
//! each step taken only when the one before was refused for a reason the next can fix.

use dittofs_api::names::OPERATOR_USERNAME;

use super::{Auth, Step, Tokens};
use crate::{
    credentials::SecretStore,
    dittofs::{ApiError, DittoFs, OPERATOR_ROLE, TokenPair},
    error::AuthError,
    secret::SecretString,
};

impl<C: DittoFs, S: SecretStore> Auth<C, S> {
    pub(super) async fn try_renew(&mut self, from: Step) -> Result<(), AuthError> {
        if from == Step::Refresh
            && let Some(t) = &self.tokens
        {
            let refresh = t.refresh.clone();
            match self.client.refresh(&refresh).await {
                Ok(pair) => {
                    self.metrics.auth_step("refresh", "ok");
                    self.adopt(pair);
                    return Ok(());
                }
                Err(e) => {
                    self.metrics.auth_step("refresh", e.label());
                    if e.is_transient() {
                        return Err(e.into());
                    }
                    // Expired, or the user is gone (database reset): log in again.
                    tracing::info!(error = %e, "token refresh refused; logging in again");
                    self.tokens = None;
                }
            }
        }
        let password = self.operator_password().await?;
        match self.client.login(OPERATOR_USERNAME, &password).await {
            Ok(pair) => {
                self.metrics.auth_step("login", "ok");
                self.adopt(pair);
                return Ok(());
            }
            Err(e) => {
                self.metrics.auth_step("login", e.label());
                match e {
                    ApiError::Unauthorized(_) => {
                        tracing::info!("DittoFS refused {OPERATOR_USERNAME:?}: provisioning the account");
                    }
                    e if e.is_transient() => return Err(e.into()),
                    e => {
                        return Err(AuthError::OperatorRefused {
                            user: OPERATOR_USERNAME.into(),
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        self.provision(&password).await?;
        match self.client.login(OPERATOR_USERNAME, &password).await {
            Ok(pair) => {
                self.metrics.auth_step("login", "ok");
                self.adopt(pair);
                Ok(())
            }
            Err(e) => {
                self.metrics.auth_step("login", e.label());
                if e.is_transient() {
                    return Err(e.into());
                }
                Err(AuthError::OperatorRefused { user: OPERATOR_USERNAME.into(), detail: e.to_string() })
            }
        }
    }

    /// Creates `k8s-operator` with role operator, or resets its password when it exists. The admin token
    /// lives only for these two calls.
    async fn provision(&mut self, password: &SecretString) -> Result<(), AuthError> {
        if self.admin_password.is_empty() {
            return Err(AuthError::NoAdminPassword(self.admin_source.clone()));
        }
        let admin_refused = |e: &ApiError| AuthError::AdminRefused {
            user: self.admin_username.clone(),
            source_desc: self.admin_source.clone(),
            detail: e.to_string(),
        };
        let admin = match self.client.login(&self.admin_username, &self.admin_password).await {
            Ok(pair) => pair.access,
            Err(e) => {
                self.metrics.auth_step("admin_login", e.label());
                return Err(match e {
                    ApiError::Unauthorized(_) | ApiError::Forbidden(_) => admin_refused(&e),
                    e => e.into(),
                });
            }
        };
        self.metrics.auth_step("admin_login", "ok");
        match self.client.create_user(&admin, OPERATOR_USERNAME, password, OPERATOR_ROLE).await {
            Ok(()) => {
                self.metrics.auth_step("provision", "created");
                tracing::info!("created DittoFS user {OPERATOR_USERNAME:?} with role {OPERATOR_ROLE}");
                Ok(())
            }
            Err(ApiError::Conflict(_)) => match self.client.reset_password(&admin, OPERATOR_USERNAME, password).await {
                Ok(()) => {
                    self.metrics.auth_step("provision", "password_reset");
                    tracing::info!("DittoFS user {OPERATOR_USERNAME:?} exists; its password was reset");
                    Ok(())
                }
                Err(e) => {
                    self.metrics.auth_step("provision", e.label());
                    Err(match e {
                        ApiError::Forbidden(_) => admin_refused(&e),
                        e => e.into(),
                    })
                }
            },
            Err(e) => {
                self.metrics.auth_step("provision", e.label());
                // 403 here: e.g. the admin must change its password first; the message says so.
                Err(match e {
                    ApiError::Forbidden(_) => admin_refused(&e),
                    e => e.into(),
                })
            }
        }
    }

    /// The password from the credentials Secret, read each time so a rotation by the controller is seen.
    async fn operator_password(&self) -> Result<SecretString, AuthError> {
        let unusable = |detail: String| AuthError::CredentialsSecret { secret: self.store.name().to_owned(), detail };
        match self.store.read().await {
            Ok(Some(stored)) => stored.password.ok_or_else(|| unusable("no password key".into())),
            Ok(None) => Err(unusable("does not exist (the controller creates it)".into())),
            Err(e) => Err(unusable(e.to_string())),
        }
    }

    fn adopt(&mut self, pair: TokenPair) {
        let tokens = Tokens::from_pair(pair, self.clock.now());
        tracing::debug!(expires_at = %tokens.expires_at, "new DittoFS token pair");
        self.tokens = Some(tokens);
    }
}
