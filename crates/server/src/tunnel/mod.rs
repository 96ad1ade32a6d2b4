//! The tunnel: a viewer's VNC stream from the browser, through this replica, to the agent that
//! runs the session — one pair of WebSockets per viewer.
//!
//! 1. `POST /api/v1/sessions/{id}/connect` (admin) issues a short-lived viewer token for one
//!    running session (`token`) and the WebSocket URL to open with it.
//! 2. `GET /api/v1/sessions/{id}/vnc?token=…` (`viewer`) checks the token and that the
//!    session is running — all before the upgrade, so refusals are JSON — registers a pending
//!    tunnel under a fresh one-time stream token, and sends `tunnel_open` to the session's agent
//!    through the hub.
//! 3. The agent dials `GET /api/v1/agents/tunnel?token=…` (`data`) with its agent key; the
//!    pending tunnel is taken out (one use) and the data socket handed to the viewer's task.
//! 4. `splice` copies binary frames both ways until either side ends, through the filters the
//!    viewer's rules need (`rfb_filter` on what the viewer sends, `rfb_server` on what the
//!    session sends: view-only input, the clipboard policy). Nothing is buffered
//!    beyond one frame per direction plus each socket's bounded write buffer: a viewer that does
//!    not read within the send timeout is closed with 1013, and since every viewer has its own
//!    data connection, TCP flow control keeps one slow viewer from stalling any other.
//!
//! The streams of this replica are registered in `crate::streams`. When a session leaves
//! `running`, `Tunnels::close_session` ends its viewers here. With several
//! replicas, the viewer, the agent and its data connection may sit on three of them; the cluster
//! asks the agent's replica to open, and `remote` forwards a data connection to the viewer's
//! replica (one hop).
//!
//! File transfers (`transfer`) travel the same way: one data connection per transfer, opened
//! by `transfer_open`, with the request in the viewer's place.

pub(crate) mod data;
pub(crate) mod remote;
pub(crate) mod rfb_filter;
pub(crate) mod rfb_server;
mod splice;
pub(crate) mod token;
pub(crate) mod transfer;
pub(crate) mod viewer;
