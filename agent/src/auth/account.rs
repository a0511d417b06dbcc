//! One renewal attempt: refresh → login → provision (create `k8s-operator`, or set its role and reset its
//! password) → login, each step taken only when the one before was refused for a reason the next can fix;
//! then the role check of the pair obtained, with its repair.

use dittofs_api::names::OPERATOR_USERNAME;

use super::{Auth, Step, Tokens, tokens::role_of};
use crate::{
    credentials::SecretStore,
    dittofs::{ApiError, DittoFs, OPERATOR_ROLE, TokenPair},
    error::AuthError,
    events::Provisioned,
    secret::SecretString,
};

impl<C: DittoFs, S: SecretStore> Auth<C, S> {
    pub(super) async fn try_renew(&mut self, from: Step) -> Result<(), AuthError> {
        let pair = self.obtain(from).await?;
        let Some(role) = role_of(&pair).filter(|r| r != OPERATOR_ROLE) else {
            self.adopt(pair);
            return Ok(());
        };
        // Never work with such a pair: an admin token is more than the agent may hold, and a user token
        // cannot list the adapters. DittoFS answered, so the admin can set the role back now.
        drop(pair);
        self.repair_role(&role).await?;
        let password = self.operator_password().await?;
        let pair = self.login_after_change(&password).await?;
        if let Some(role) = role_of(&pair).filter(|r| r != OPERATOR_ROLE) {
            return Err(AuthError::WrongRole { user: OPERATOR_USERNAME.into(), role });
        }
        self.adopt(pair);
        Ok(())
    }

    /// A new pair for `k8s-operator`, by refresh if `from` allows, else by login, provisioning the account
    /// when the login is refused.
    async fn obtain(&mut self, from: Step) -> Result<TokenPair, AuthError> {
        if from == Step::Refresh
            && let Some(t) = &self.tokens
        {
            let refresh = t.refresh.clone();
            match self.client.refresh(&refresh).await {
                Ok(pair) => {
                    self.metrics.auth_step("refresh", "ok");
                    return Ok(pair);
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
                return Ok(pair);
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
        self.login_after_change(&password).await
    }

    /// The login right after the admin changed the account: a refusal now is not fixed by trying again.
    async fn login_after_change(&mut self, password: &SecretString) -> Result<TokenPair, AuthError> {
        match self.client.login(OPERATOR_USERNAME, password).await {
            Ok(pair) => {
                self.metrics.auth_step("login", "ok");
                Ok(pair)
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

    /// Creates `k8s-operator` with role operator, or, when it exists, sets its role and resets its
    /// password. The admin token lives only for these calls.
    async fn provision(&mut self, password: &SecretString) -> Result<(), AuthError> {
        let admin = self.admin_token().await?;
        match self.client.create_user(&admin, OPERATOR_USERNAME, password, OPERATOR_ROLE).await {
            Ok(()) => {
                self.metrics.auth_step("provision", "created");
                tracing::info!("created DittoFS user {OPERATOR_USERNAME:?} with role {OPERATOR_ROLE}");
                self.provisioned = Some(Provisioned::Created);
                return Ok(());
            }
            Err(ApiError::Conflict(_)) => {}
            Err(e) => {
                self.metrics.auth_step("provision", e.label());
                // 403 here: e.g. the admin must change its password first; the message says so.
                return Err(self.admin_error(e));
            }
        }
        // The role first: DittoFS marks the password of an admin it resets as must-change, which would
        // block the account's every request even once its role is operator again.
        if let Err(e) = self.client.set_role(&admin, OPERATOR_USERNAME, OPERATOR_ROLE).await {
            self.metrics.auth_step("provision", e.label());
            return Err(self.admin_error(e));
        }
        match self.client.reset_password(&admin, OPERATOR_USERNAME, password).await {
            Ok(()) => {
                self.metrics.auth_step("provision", "password_reset");
                tracing::info!("DittoFS user {OPERATOR_USERNAME:?} exists; its password was reset");
                self.provisioned = Some(Provisioned::PasswordReset);
                Ok(())
            }
            Err(e) => {
                self.metrics.auth_step("provision", e.label());
                Err(self.admin_error(e))
            }
        }
    }

    /// Sets the role of `k8s-operator` back to operator, as admin; `found` is the role DittoFS reported.
    async fn repair_role(&mut self, found: &str) -> Result<(), AuthError> {
        let admin = self.admin_token().await?;
        match self.client.set_role(&admin, OPERATOR_USERNAME, OPERATOR_ROLE).await {
            Ok(()) => {
                self.metrics.auth_step("role_repair", "ok");
                tracing::warn!(
                    role = found,
                    "DittoFS user {OPERATOR_USERNAME:?} had role {found:?}, not {OPERATOR_ROLE}; it was set back"
                );
                self.repaired = Some((found.to_owned(), self.clock.now()));
                Ok(())
            }
            Err(e) => {
                self.metrics.auth_step("role_repair", e.label());
                Err(self.admin_error(e))
            }
        }
    }

    /// An admin access token, from the bootstrap password read now (a rotated Secret file is seen).
    pub(super) async fn admin_token(&mut self) -> Result<SecretString, AuthError> {
        let password = self.admin_password.read()?;
        if password.is_empty() {
            return Err(AuthError::NoAdminPassword(self.admin_source.clone()));
        }
        match self.client.login(&self.admin_username, &password).await {
            Ok(pair) => {
                self.metrics.auth_step("admin_login", "ok");
                Ok(pair.access)
            }
            Err(e) => {
                self.metrics.auth_step("admin_login", e.label());
                Err(self.admin_error(e))
            }
        }
    }

    /// A refusal of the admin (401, 403) names where its password comes from; anything else is the API's.
    fn admin_error(&self, e: ApiError) -> AuthError {
        match e {
            ApiError::Unauthorized(_) | ApiError::Forbidden(_) => AuthError::AdminRefused {
                user: self.admin_username.clone(),
                source_desc: self.admin_source.clone(),
                detail: e.to_string(),
            },
            e => e.into(),
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
