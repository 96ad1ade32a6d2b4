//! Who may do what: the one place the control plane decides authorization.
//!
//! [`decide`] is a pure function of the actor, the action and the resource (which the handler
//! loads first); it does no I/O, so it is tested as a table. Handlers never compare roles
//! themselves: they ask here, and turn a [`Denial`] into an answer with [`Denial::into_error`].
//!
//! Two rules shape the answers. Someone else's session (or a command of it) is answered
//! `404 not_found`, exactly as a session that does not exist, so ids of other users' sessions
//! never leak; an action that needs a higher role is answered `403 forbidden`, naming the role.

use axum::http::StatusCode;
use streamspace_proto::api::{Recording, Role, Session, Share, Template};
use uuid::Uuid;

use crate::error::ApiError;

/// Who is asking: a signed-in user (through a token or a browser session).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Principal {
    pub user_id: Uuid,
    pub username: String,
    pub role: Role,
    pub groups: Vec<String>,
}

/// Everything a user can ask the API to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Read a session (show, its commands, its viewer's connection).
    ReadSession,
    /// Stop, hibernate or wake a session, or connect a viewer to it.
    ControlSession,
    /// Make, list and revoke a session's share links; see and disconnect its viewers.
    ShareSession,
    /// Open a viewer through a share link.
    UseShare,
    /// Upload files into a session, download them from it, list its transfer folder.
    TransferFiles,
    /// See every user's sessions (listing without the owner filter forced to oneself).
    ListAllSessions,
    /// Launch a session from a template.
    LaunchTemplate,
    /// Read templates (only those the user may launch are listed to a `user`).
    ReadTemplate,
    /// Create, change or delete templates: they carry the commands agents run.
    ManageTemplates,
    /// Agents, agent keys, replicas, every command, the overview of the whole system.
    ManageAgents,
    /// Users, groups, quotas and other users' tokens.
    ManageUsers,
    /// Read every user's audit entries (everyone reads their own).
    ReadAllAudit,
    /// Read or revoke a personal token.
    ManageToken,
    /// List, read or delete recordings of a session's viewings: its owner and admins only
    /// (operators, who may watch any session, may not replay what others were shown).
    ManageRecordings,
}

/// The resource an action is about, loaded by the handler.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resource<'a> {
    /// The action is about the system as a whole (listings, creation, administration).
    System,
    Session(&'a Session),
    Template(&'a Template),
    Share(&'a Share),
    /// A personal token of the user with this id.
    TokenOf(Uuid),
    /// A recording of a viewing.
    Recording(&'a Recording),
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Denial {
    /// Answered as if the resource did not exist.
    Hidden { what: &'static str },
    /// The actor's role is not enough.
    NeedsRole(Role),
    /// The template is limited to groups the user is not in.
    NotInAllowedGroups { template: String },
    /// The share link names users and groups, and the user is none of them.
    NotSharedWith,
}

impl Denial {
    pub fn into_error(self) -> ApiError {
        match self {
            Self::Hidden { what } => ApiError::not_found(format!("{what} not found")),
            Self::NeedsRole(role) => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the {role} role"),
            ),
            Self::NotInAllowedGroups { template } => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("template {template:?} may be launched only by members of its groups"),
            ),
            Self::NotSharedWith => ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this share link is for other users; ask the session's owner to add you",
            ),
        }
    }
}

/// Decides whether `actor` may do `action` to `resource`.
pub(crate) fn decide(
    actor: &Principal,
    action: Action,
    resource: Resource<'_>,
) -> Result<(), Denial> {
    let at_least = |role: Role| {
        if actor.role >= role {
            Ok(())
        } else {
            Err(Denial::NeedsRole(role))
        }
    };
    match (action, resource) {
        (
            Action::ReadSession
            | Action::ControlSession
            | Action::ShareSession
            | Action::TransferFiles,
            Resource::Session(session),
        ) => {
            if actor.role >= Role::Operator || session.owner_id == Some(actor.user_id) {
                Ok(())
            } else {
                Err(Denial::Hidden { what: "session" })
            }
        }
        (Action::ListAllSessions, _) => at_least(Role::Operator),
        (Action::UseShare, Resource::Share(share)) => {
            if actor.role >= Role::Operator || shared_with(actor, share) {
                Ok(())
            } else {
                Err(Denial::NotSharedWith)
            }
        }
        (Action::LaunchTemplate | Action::ReadTemplate, Resource::Template(template)) => {
            if actor.role >= Role::Operator || may_use(actor, template) {
                Ok(())
            } else if action == Action::ReadTemplate {
                Err(Denial::Hidden { what: "template" })
            } else {
                Err(Denial::NotInAllowedGroups {
                    template: template.name.clone(),
                })
            }
        }
        (Action::ReadTemplate, Resource::System) => Ok(()),
        (Action::ManageTemplates, _) | (Action::ManageAgents, _) => at_least(Role::Operator),
        (Action::ManageUsers, _) | (Action::ReadAllAudit, _) => at_least(Role::Admin),
        (Action::ManageToken, Resource::TokenOf(owner)) => {
            if owner == actor.user_id || actor.role == Role::Admin {
                Ok(())
            } else {
                Err(Denial::Hidden { what: "token" })
            }
        }
        (Action::ManageRecordings, Resource::Session(session)) => {
            if actor.role == Role::Admin || session.owner_id == Some(actor.user_id) {
                Ok(())
            } else if actor.role >= Role::Operator {
                Err(Denial::NeedsRole(Role::Admin))
            } else {
                Err(Denial::Hidden { what: "session" })
            }
        }
        (Action::ManageRecordings, Resource::Recording(recording)) => {
            if actor.role == Role::Admin || recording.owner_id == Some(actor.user_id) {
                Ok(())
            } else {
                Err(Denial::Hidden { what: "recording" })
            }
        }
        // An action asked about a resource it does not apply to is a bug in the caller:
        // refuse it rather than guess.
        _ => at_least(Role::Admin),
    }
}

/// Whether a share link's users and groups name `actor` (both empty = everyone signed in).
fn shared_with(actor: &Principal, share: &Share) -> bool {
    (share.users.is_empty() && share.groups.is_empty())
        || share.users.contains(&actor.username)
        || share.groups.iter().any(|g| actor.groups.contains(g))
}

/// Whether a template's group list lets `actor` use it (empty = everyone).
fn may_use(actor: &Principal, template: &Template) -> bool {
    template.allowed_groups.is_empty()
        || template
            .allowed_groups
            .iter()
            .any(|g| actor.groups.contains(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use streamspace_proto::api::{CreateTemplate, SessionState};

    fn principal(role: Role, groups: &[&str]) -> Principal {
        Principal {
            user_id: Uuid::now_v7(),
            username: format!("{role}-user"),
            role,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn session_of(owner: &Principal) -> Session {
        Session {
            id: Uuid::now_v7(),
            template: "xterm".into(),
            agent_id: Some("a1".into()),
            state: SessionState::Running,
            vnc_address: None,
            error_message: None,
            owner: owner.username.clone(),
            owner_id: Some(owner.user_id),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn template(groups: &[&str]) -> Template {
        Template::new(
            CreateTemplate {
                name: "xterm".into(),
                allowed_groups: groups.iter().map(|g| g.to_string()).collect(),
                ..CreateTemplate::default()
            },
            Utc::now(),
        )
    }

    #[test]
    fn recordings_are_for_the_sessions_owner_and_admins() {
        let alice = principal(Role::User, &[]);
        let bob = principal(Role::User, &[]);
        let operator = principal(Role::Operator, &[]);
        let admin = principal(Role::Admin, &[]);
        let hers = session_of(&alice);
        let recording = Recording {
            id: Uuid::now_v7(),
            session_id: hers.id,
            owner_id: Some(alice.user_id),
            viewer_id: operator.user_id,
            viewer: operator.username.clone(),
            started_at: Utc::now(),
            ended_at: None,
            bytes: 0,
            complete: false,
        };
        let act = Action::ManageRecordings;
        for who in [&alice, &admin] {
            assert_eq!(decide(who, act, Resource::Session(&hers)), Ok(()));
            assert_eq!(decide(who, act, Resource::Recording(&recording)), Ok(()));
        }
        assert_eq!(
            decide(&bob, act, Resource::Session(&hers)),
            Err(Denial::Hidden { what: "session" })
        );
        assert_eq!(
            decide(&operator, act, Resource::Session(&hers)),
            Err(Denial::NeedsRole(Role::Admin)),
            "an operator sees the session but not what its viewers were shown"
        );
        for who in [&bob, &operator] {
            assert_eq!(
                decide(who, act, Resource::Recording(&recording)),
                Err(Denial::Hidden { what: "recording" }),
                "even the operator who watched"
            );
        }
    }

    #[test]
    fn sessions_belong_to_their_owner_and_to_operators() {
        let alice = principal(Role::User, &[]);
        let bob = principal(Role::User, &[]);
        let operator = principal(Role::Operator, &[]);
        let admin = principal(Role::Admin, &[]);
        let hers = session_of(&alice);
        for action in [
            Action::ReadSession,
            Action::ControlSession,
            Action::ShareSession,
            Action::TransferFiles,
        ] {
            assert_eq!(decide(&alice, action, Resource::Session(&hers)), Ok(()));
            assert_eq!(
                decide(&bob, action, Resource::Session(&hers)),
                Err(Denial::Hidden { what: "session" }),
                "another user's session must look absent, not forbidden"
            );
            assert_eq!(decide(&operator, action, Resource::Session(&hers)), Ok(()));
            assert_eq!(decide(&admin, action, Resource::Session(&hers)), Ok(()));
        }
        let orphan = Session {
            owner_id: None,
            ..hers.clone()
        };
        assert!(decide(&alice, Action::ReadSession, Resource::Session(&orphan)).is_err());
        assert_eq!(
            decide(&alice, Action::ListAllSessions, Resource::System),
            Err(Denial::NeedsRole(Role::Operator))
        );
    }

    #[test]
    fn the_role_table() {
        // (action, least role that may do it)
        let table = [
            (Action::ManageTemplates, Role::Operator),
            (Action::ManageAgents, Role::Operator),
            (Action::ListAllSessions, Role::Operator),
            (Action::ManageUsers, Role::Admin),
            (Action::ReadAllAudit, Role::Admin),
            (Action::ReadTemplate, Role::User),
        ];
        for (action, least) in table {
            for role in Role::ALL {
                let got = decide(&principal(role, &[]), action, Resource::System);
                if role >= least {
                    assert_eq!(got, Ok(()), "{role} may {action:?}");
                } else {
                    assert_eq!(
                        got,
                        Err(Denial::NeedsRole(least)),
                        "{role} may not {action:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn templates_are_launched_by_their_groups() {
        let open = template(&[]);
        let staff_only = template(&["staff"]);
        let outsider = principal(Role::User, &["guests"]);
        let member = principal(Role::User, &["guests", "staff"]);
        let operator = principal(Role::Operator, &[]);
        for (who, t, ok) in [
            (&outsider, &open, true),
            (&outsider, &staff_only, false),
            (&member, &staff_only, true),
            (&operator, &staff_only, true),
        ] {
            let launch = decide(who, Action::LaunchTemplate, Resource::Template(t));
            let read = decide(who, Action::ReadTemplate, Resource::Template(t));
            assert_eq!(launch.is_ok(), ok, "{} launching {t:?}", who.username);
            assert_eq!(read.is_ok(), ok);
        }
        assert!(matches!(
            decide(
                &outsider,
                Action::LaunchTemplate,
                Resource::Template(&staff_only)
            ),
            Err(Denial::NotInAllowedGroups { .. })
        ));
    }

    #[test]
    fn share_links_open_for_the_users_and_groups_they_name() {
        let owner = principal(Role::User, &[]);
        let bob = Principal {
            username: "bob".into(),
            ..principal(Role::User, &[])
        };
        let staff = principal(Role::User, &["staff"]);
        let operator = principal(Role::Operator, &[]);
        let now = Utc::now();
        let open = Share {
            id: Uuid::now_v7(),
            session_id: Uuid::now_v7(),
            created_by: Some(owner.username.clone()),
            mode: streamspace_proto::api::ShareMode::ViewOnly,
            users: vec![],
            groups: vec![],
            expires_at: now,
            revoked_at: None,
            created_at: now,
            link: String::new(),
        };
        let named = Share {
            users: vec![bob.username.clone()],
            groups: vec!["staff".into()],
            ..open.clone()
        };
        let stranger = principal(Role::User, &["guests"]);
        for (who, share, ok) in [
            (&stranger, &open, true),
            (&bob, &named, true),
            (&staff, &named, true),
            (&operator, &named, true),
            (&stranger, &named, false),
        ] {
            let got = decide(who, Action::UseShare, Resource::Share(share));
            assert_eq!(got.is_ok(), ok, "{} using {share:?}", who.username);
        }
        assert_eq!(
            decide(&stranger, Action::UseShare, Resource::Share(&named)),
            Err(Denial::NotSharedWith)
        );
    }

    #[test]
    fn tokens_are_their_owners_and_admins() {
        let alice = principal(Role::User, &[]);
        let operator = principal(Role::Operator, &[]);
        let admin = principal(Role::Admin, &[]);
        let of_alice = Resource::TokenOf(alice.user_id);
        assert_eq!(decide(&alice, Action::ManageToken, of_alice), Ok(()));
        assert!(decide(&operator, Action::ManageToken, of_alice).is_err());
        assert_eq!(decide(&admin, Action::ManageToken, of_alice), Ok(()));
    }

    #[test]
    fn denials_answer_404_or_403_with_a_code() {
        let e = Denial::Hidden { what: "session" }.into_error();
        assert_eq!((e.status, e.code), (StatusCode::NOT_FOUND, "not_found"));
        let e = Denial::NeedsRole(Role::Admin).into_error();
        assert_eq!((e.status, e.code), (StatusCode::FORBIDDEN, "forbidden"));
        assert!(e.message.contains("admin"), "{}", e.message);
    }
}
