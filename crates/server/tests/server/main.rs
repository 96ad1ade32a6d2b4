//! Integration tests of the control plane: a real server on 127.0.0.1:0 over a real database,
//! driven over HTTP and by scripted fake agents over real WebSockets.

mod common;

mod access;
mod agent_ws;
mod api;
mod audit;
mod dispatch;
mod http_limits;
mod oidc;
mod overview;
mod quota;
mod rules;
mod secrets;
mod template_fields;
mod template_limits;
mod template_update;
mod tls;
mod totp;
mod tunnel;
mod user_homes;
