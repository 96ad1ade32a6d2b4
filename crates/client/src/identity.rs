//! Users, groups, their quotas, personal tokens and signing in: the client half of
//! `/api/v1/users`, `/api/v1/groups`, `/api/v1/tokens` and `/api/v1/auth`.

use reqwest::Method;
use streamspace_proto::api::{
    ApiToken, AuditFilter, AuditRecord, ChangePassword, ConfirmTotp, CreateGroup, CreateToken,
    CreateUser, CreatedToken, DisableTotp, Group, GroupQuota, LoginRequest, LoginResponse, Me,
    Page, RecoveryCodes, SessionRules, SetQuota, TotpEnrolment, UpdateGroup, UpdateUser, User,
    UserQuota,
};
use uuid::Uuid;

use crate::{Client, Result, encode_segment};

impl Client {
    /// `POST /api/v1/auth/login`, without a token (the answer may carry one, with
    /// `token_name`). The browser-session cookie the server sets is not kept.
    pub async fn login(&self, request: &LoginRequest) -> Result<LoginResponse> {
        let url = self.url("api/v1/auth/login")?;
        self.send(self.http.post(url).json(request)).await
    }

    /// Ends the credential this client uses (unless it is the bootstrap admin token).
    pub async fn logout(&self) -> Result<()> {
        self.send_unit(self.request(Method::POST, "api/v1/auth/logout")?)
            .await
    }

    pub async fn me(&self) -> Result<Me> {
        self.send(self.request(Method::GET, "api/v1/auth/me")?)
            .await
    }

    pub async fn change_password(&self, old: &str, new: &str) -> Result<()> {
        let body = ChangePassword {
            old_password: old.to_owned(),
            new_password: new.to_owned(),
        };
        self.send_unit(
            self.request(Method::POST, "api/v1/auth/password")?
                .json(&body),
        )
        .await
    }

    /// `POST /api/v1/auth/totp`: starts one-time-code enrolment with a new pending secret.
    pub async fn start_totp(&self) -> Result<TotpEnrolment> {
        self.send(self.request(Method::POST, "api/v1/auth/totp")?)
            .await
    }

    /// `POST /api/v1/auth/totp/confirm`: turns the pending secret on; answers the recovery
    /// codes, which are shown only this once.
    pub async fn confirm_totp(&self, code: &str) -> Result<RecoveryCodes> {
        let body = ConfirmTotp {
            code: code.to_owned(),
        };
        self.send(
            self.request(Method::POST, "api/v1/auth/totp/confirm")?
                .json(&body),
        )
        .await
    }

    /// `DELETE /api/v1/auth/totp`: turns one-time codes off (needs the password).
    pub async fn disable_totp(&self, password: &str) -> Result<()> {
        let body = DisableTotp {
            password: password.to_owned(),
        };
        self.send_unit(
            self.request(Method::DELETE, "api/v1/auth/totp")?
                .json(&body),
        )
        .await
    }

    // --- users ----------------------------------------------------------------------------

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.all("api/v1/users", &[]).await
    }

    pub async fn get_user(&self, username: &str) -> Result<User> {
        let path = format!("api/v1/users/{}", encode_segment(username));
        self.send(self.request(Method::GET, &path)?).await
    }

    pub async fn create_user(&self, user: &CreateUser) -> Result<User> {
        self.send(self.request(Method::POST, "api/v1/users")?.json(user))
            .await
    }

    pub async fn update_user(&self, username: &str, change: &UpdateUser) -> Result<User> {
        let path = format!("api/v1/users/{}", encode_segment(username));
        self.send(self.request(Method::PATCH, &path)?.json(change))
            .await
    }

    pub async fn delete_user(&self, username: &str) -> Result<()> {
        let path = format!("api/v1/users/{}", encode_segment(username));
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }

    // --- groups ---------------------------------------------------------------------------

    pub async fn list_groups(&self) -> Result<Vec<Group>> {
        self.all("api/v1/groups", &[]).await
    }

    pub async fn get_group(&self, name: &str) -> Result<Group> {
        let path = format!("api/v1/groups/{}", encode_segment(name));
        self.send(self.request(Method::GET, &path)?).await
    }

    pub async fn create_group(&self, group: &CreateGroup) -> Result<Group> {
        self.send(self.request(Method::POST, "api/v1/groups")?.json(group))
            .await
    }

    pub async fn update_group(&self, name: &str, change: &UpdateGroup) -> Result<Group> {
        let path = format!("api/v1/groups/{}", encode_segment(name));
        self.send(self.request(Method::PATCH, &path)?.json(change))
            .await
    }

    pub async fn delete_group(&self, name: &str) -> Result<()> {
        let path = format!("api/v1/groups/{}", encode_segment(name));
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }

    pub async fn add_group_member(&self, group: &str, username: &str) -> Result<Group> {
        let path = format!(
            "api/v1/groups/{}/members/{}",
            encode_segment(group),
            encode_segment(username)
        );
        self.send(self.request(Method::PUT, &path)?).await
    }

    pub async fn remove_group_member(&self, group: &str, username: &str) -> Result<()> {
        let path = format!(
            "api/v1/groups/{}/members/{}",
            encode_segment(group),
            encode_segment(username)
        );
        self.send_unit(self.request(Method::DELETE, &path)?).await
    }

    // --- quotas ---------------------------------------------------------------------------

    /// A user's own limits, the ones that apply after inheritance, and their use (admins).
    pub async fn get_user_quota(&self, username: &str) -> Result<UserQuota> {
        let path = format!("api/v1/users/{}/quota", encode_segment(username));
        self.send(self.request(Method::GET, &path)?).await
    }

    /// Changes a user's own limits: an omitted field stays, `Some(None)` clears it.
    pub async fn set_user_quota(&self, username: &str, change: &SetQuota) -> Result<UserQuota> {
        let path = format!("api/v1/users/{}/quota", encode_segment(username));
        self.send(self.request(Method::PUT, &path)?.json(change))
            .await
    }

    pub async fn get_group_quota(&self, name: &str) -> Result<GroupQuota> {
        let path = format!("api/v1/groups/{}/quota", encode_segment(name));
        self.send(self.request(Method::GET, &path)?).await
    }

    /// Changes a group's limits: an omitted field stays, `Some(None)` clears it.
    pub async fn set_group_quota(&self, name: &str, change: &SetQuota) -> Result<GroupQuota> {
        let path = format!("api/v1/groups/{}/quota", encode_segment(name));
        self.send(self.request(Method::PUT, &path)?.json(change))
            .await
    }

    /// The session rules set on a group.
    pub async fn get_group_rules(&self, name: &str) -> Result<SessionRules> {
        let path = format!("api/v1/groups/{}/rules", encode_segment(name));
        self.send(self.request(Method::GET, &path)?).await
    }

    /// Replaces a group's session rules whole.
    pub async fn set_group_rules(&self, name: &str, rules: &SessionRules) -> Result<SessionRules> {
        let path = format!("api/v1/groups/{}/rules", encode_segment(name));
        self.send(self.request(Method::PUT, &path)?.json(rules))
            .await
    }

    // --- tokens ---------------------------------------------------------------------------

    /// Your own tokens, or (admins) those of `user`.
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<ApiToken>> {
        match user {
            Some(user) => self.all("api/v1/tokens", &[("user", user)]).await,
            None => self.all("api/v1/tokens", &[]).await,
        }
    }

    pub async fn create_token(&self, token: &CreateToken) -> Result<CreatedToken> {
        self.send(self.request(Method::POST, "api/v1/tokens")?.json(token))
            .await
    }

    pub async fn revoke_token(&self, id: Uuid) -> Result<()> {
        self.send_unit(self.request(Method::DELETE, &format!("api/v1/tokens/{id}"))?)
            .await
    }

    // --- audit ----------------------------------------------------------------------------

    /// One page of the audit log (admins: everyone's; others: their own).
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditRecord>> {
        self.send(self.request(Method::GET, "api/v1/audit")?.query(filter))
            .await
    }
}
