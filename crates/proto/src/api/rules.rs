//! Session rules: which way a session's clipboard may flow, which way files may be transferred,
//! and whether viewing it is recorded.
//!
//! Rules are set at three levels: on a template (copied into each session when it is created),
//! on groups (they apply to their members, read at the moment of use), and server-wide defaults
//! (flags). What applies to one user acting on one session ([`SessionRules::effective`]) is
//! decided per field: among the template and the user's groups that say something, the
//! stricter wins; where none says anything, the server's default applies. Stricter means fewer
//! directions for the clipboard and for files, the smaller size limit, and more recording.

use serde::{Deserialize, Serialize};

/// Which way text may cross between the viewer's clipboard and the session's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClipboardPolicy {
    /// Both ways.
    #[default]
    Both,
    /// Only from the viewer into the session (pasting in).
    ToSession,
    /// Only from the session out to the viewer (copying out).
    FromSession,
    /// Neither way.
    None,
}

impl ClipboardPolicy {
    pub const ALL: [ClipboardPolicy; 4] =
        [Self::Both, Self::ToSession, Self::FromSession, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::ToSession => "to_session",
            Self::FromSession => "from_session",
            Self::None => "none",
        }
    }

    /// Whether the viewer may send clipboard text into the session.
    pub fn to_session(self) -> bool {
        matches!(self, Self::Both | Self::ToSession)
    }

    /// Whether the session's clipboard text may reach the viewer.
    pub fn from_session(self) -> bool {
        matches!(self, Self::Both | Self::FromSession)
    }

    fn of(to_session: bool, from_session: bool) -> Self {
        match (to_session, from_session) {
            (true, true) => Self::Both,
            (true, false) => Self::ToSession,
            (false, true) => Self::FromSession,
            (false, false) => Self::None,
        }
    }

    /// The directions both allow.
    pub fn stricter(self, other: Self) -> Self {
        Self::of(
            self.to_session() && other.to_session(),
            self.from_session() && other.from_session(),
        )
    }
}

/// Which way files may be transferred between the viewer and the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TransferPolicy {
    /// Uploads and downloads.
    #[default]
    Both,
    /// Only into the session.
    Upload,
    /// Only out of the session.
    Download,
    /// No transfers.
    None,
}

impl TransferPolicy {
    pub const ALL: [TransferPolicy; 4] = [Self::Both, Self::Upload, Self::Download, Self::None];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::Upload => "upload",
            Self::Download => "download",
            Self::None => "none",
        }
    }

    /// Whether files may be uploaded into the session.
    pub fn upload(self) -> bool {
        matches!(self, Self::Both | Self::Upload)
    }

    /// Whether files may be downloaded from the session.
    pub fn download(self) -> bool {
        matches!(self, Self::Both | Self::Download)
    }

    fn of(upload: bool, download: bool) -> Self {
        match (upload, download) {
            (true, true) => Self::Both,
            (true, false) => Self::Upload,
            (false, true) => Self::Download,
            (false, false) => Self::None,
        }
    }

    /// The directions both allow.
    pub fn stricter(self, other: Self) -> Self {
        Self::of(
            self.upload() && other.upload(),
            self.download() && other.download(),
        )
    }
}

/// Whether viewing a session is recorded. Ordered from least to most recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RecordingPolicy {
    /// Never recorded.
    #[default]
    Off,
    /// Recorded when the viewer asks for it.
    OnRequest,
    /// Every viewing is recorded (time when nobody watches is not).
    Always,
}

impl RecordingPolicy {
    pub const ALL: [RecordingPolicy; 3] = [Self::Off, Self::OnRequest, Self::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::OnRequest => "on_request",
            Self::Always => "always",
        }
    }

    /// The one that records more.
    pub fn stricter(self, other: Self) -> Self {
        self.max(other)
    }
}

macro_rules! parse_by_name {
    ($ty:ident, $what:literal) => {
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|p| p.as_str() == s)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|p| p.as_str()).collect();
                        format!(
                            concat!("unknown ", $what, " {:?}; expected one of {}"),
                            s,
                            names.join(", ")
                        )
                    })
            }
        }
    };
}

parse_by_name!(ClipboardPolicy, "clipboard policy");
parse_by_name!(TransferPolicy, "file transfer policy");
parse_by_name!(RecordingPolicy, "recording policy");

/// Rules at one level (a template, a group). `None`: this level says nothing about that field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipboard: Option<ClipboardPolicy>,
    /// Largest clipboard text that may cross, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipboard_max_bytes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_transfer: Option<TransferPolicy>,
    /// Largest file that may be transferred, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_max_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingPolicy>,
}

/// The rules that apply to one user acting on one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EffectiveRules {
    pub clipboard: ClipboardPolicy,
    pub clipboard_max_bytes: u32,
    pub file_transfer: TransferPolicy,
    pub transfer_max_bytes: u64,
    pub recording: RecordingPolicy,
}

impl SessionRules {
    /// Whether this level says nothing at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// What applies to a user in `groups` acting on a session created with `template`'s rules,
    /// under the server's `defaults`: per field, the stricter of what the template and the
    /// groups say, or the default where none of them says anything.
    pub fn effective(
        template: &Self,
        groups: &[Self],
        defaults: &EffectiveRules,
    ) -> EffectiveRules {
        fn strictest<T: Copy>(
            levels: impl Iterator<Item = Option<T>>,
            default: T,
            stricter: fn(T, T) -> T,
        ) -> T {
            levels.flatten().reduce(stricter).unwrap_or(default)
        }
        let levels = || std::iter::once(template).chain(groups);
        EffectiveRules {
            clipboard: strictest(
                levels().map(|l| l.clipboard),
                defaults.clipboard,
                ClipboardPolicy::stricter,
            ),
            clipboard_max_bytes: strictest(
                levels().map(|l| l.clipboard_max_bytes),
                defaults.clipboard_max_bytes,
                std::cmp::min,
            ),
            file_transfer: strictest(
                levels().map(|l| l.file_transfer),
                defaults.file_transfer,
                TransferPolicy::stricter,
            ),
            transfer_max_bytes: strictest(
                levels().map(|l| l.transfer_max_bytes),
                defaults.transfer_max_bytes,
                std::cmp::min,
            ),
            recording: strictest(
                levels().map(|l| l.recording),
                defaults.recording,
                RecordingPolicy::stricter,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: EffectiveRules = EffectiveRules {
        clipboard: ClipboardPolicy::Both,
        clipboard_max_bytes: 1 << 20,
        file_transfer: TransferPolicy::Both,
        transfer_max_bytes: 1 << 30,
        recording: RecordingPolicy::Off,
    };

    #[test]
    fn nothing_said_means_the_defaults() {
        let effective = SessionRules::effective(&SessionRules::default(), &[], &DEFAULTS);
        assert_eq!(effective, DEFAULTS);
    }

    #[test]
    fn the_stricter_of_template_and_groups_wins_per_field() {
        let template = SessionRules {
            clipboard: Some(ClipboardPolicy::ToSession),
            transfer_max_bytes: Some(5_000),
            recording: Some(RecordingPolicy::OnRequest),
            ..SessionRules::default()
        };
        let groups = [
            SessionRules {
                clipboard: Some(ClipboardPolicy::FromSession),
                clipboard_max_bytes: Some(100),
                file_transfer: Some(TransferPolicy::Download),
                ..SessionRules::default()
            },
            SessionRules {
                clipboard_max_bytes: Some(50),
                file_transfer: Some(TransferPolicy::Both),
                transfer_max_bytes: Some(9_000),
                recording: Some(RecordingPolicy::Always),
                ..SessionRules::default()
            },
        ];
        let effective = SessionRules::effective(&template, &groups, &DEFAULTS);
        assert_eq!(
            effective,
            EffectiveRules {
                clipboard: ClipboardPolicy::None,
                clipboard_max_bytes: 50,
                file_transfer: TransferPolicy::Download,
                transfer_max_bytes: 5_000,
                recording: RecordingPolicy::Always,
            }
        );
    }

    #[test]
    fn a_level_that_says_something_is_not_loosened_by_the_default() {
        let defaults = EffectiveRules {
            clipboard: ClipboardPolicy::None,
            recording: RecordingPolicy::Always,
            ..DEFAULTS
        };
        let template = SessionRules {
            clipboard: Some(ClipboardPolicy::Both),
            recording: Some(RecordingPolicy::Off),
            ..SessionRules::default()
        };
        // The default applies only where nobody says anything: here the template speaks.
        let effective = SessionRules::effective(&template, &[], &defaults);
        assert_eq!(effective.clipboard, ClipboardPolicy::Both);
        assert_eq!(effective.recording, RecordingPolicy::Off);
    }

    #[test]
    fn stricter_is_symmetric_and_names_round_trip() {
        for a in ClipboardPolicy::ALL {
            assert_eq!(a.as_str().parse::<ClipboardPolicy>(), Ok(a));
            for b in ClipboardPolicy::ALL {
                assert_eq!(a.stricter(b), b.stricter(a));
                assert!(!a.stricter(b).to_session() || (a.to_session() && b.to_session()));
            }
        }
        for a in TransferPolicy::ALL {
            assert_eq!(a.as_str().parse::<TransferPolicy>(), Ok(a));
            for b in TransferPolicy::ALL {
                assert_eq!(a.stricter(b), b.stricter(a));
            }
        }
        for a in RecordingPolicy::ALL {
            assert_eq!(a.as_str().parse::<RecordingPolicy>(), Ok(a));
        }
        assert!("sometimes".parse::<RecordingPolicy>().is_err());
    }

    #[test]
    fn json_omits_what_a_level_does_not_say_and_refuses_unknown_fields() -> serde_json::Result<()> {
        assert_eq!(serde_json::to_string(&SessionRules::default())?, "{}");
        let rules: SessionRules =
            serde_json::from_str(r#"{"clipboard":"to_session","recording":"always"}"#)?;
        assert_eq!(rules.clipboard, Some(ClipboardPolicy::ToSession));
        assert!(serde_json::from_str::<SessionRules>(r#"{"clipbaord":"none"}"#).is_err());
        Ok(())
    }
}
