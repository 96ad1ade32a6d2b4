//! Where Redis is and how this replica logs in to it: a single server, or the master a set of
//! Sentinels names, each with its own TLS and credentials.
//!
//! - `redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]`, or `rediss://…` for TLS.
//! - `redis+sentinel://[USER[:PASSWORD]@]HOST[:PORT][,HOST[:PORT]…]/MASTER`, or
//!   `rediss+sentinel://…` for TLS to the Sentinels *and* the master.
//!
//! The user-info of either URL is always the data nodes' credential (the master's ACL user
//! and password, or just `:PASSWORD` for `requirepass`), so a URL means the same whether or not
//! Sentinel is in front. Sentinels have their own credential, which cannot share the URL: it
//! comes from [`RedisConfig::sentinel_username`]/[`RedisConfig::sentinel_password`]. The data
//! nodes' password may come from a file instead of the URL ([`RedisConfig::password`]).
//!
//! Certificates are always verified, against `--ca-cert` when given (that CA only), else the
//! public web roots; `#insecure` URLs are refused. The master's certificate must name the address
//! the Sentinels report for it (an IP address unless they announce host names).

use redis::{
    Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisResult, TlsCertificates,
};

use super::link::{InvalidRedisUrl, io_error, timed};
use crate::config::RedisConfig;

/// Where Redis is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Direct(Client),
    Sentinel(Sentinels),
}

/// The Sentinels to ask for the master, and how to log in to both.
#[derive(Debug, Clone)]
pub(crate) struct Sentinels {
    pub nodes: Vec<(String, u16)>,
    pub master: String,
    /// `None`: plain TCP to the Sentinels and the master.
    tls: Option<Tls>,
    sentinel_login: RedisConnectionInfo,
    master_login: RedisConnectionInfo,
}

/// TLS, verified against `ca` (PEM) or, without one, the public web roots.
#[derive(Debug, Clone)]
struct Tls {
    ca: Option<Vec<u8>>,
}

/// The port Sentinels listen on unless the URL says otherwise.
const SENTINEL_PORT: u16 = 26379;

impl Target {
    /// The target `config` names; `ca` is the PEM of `--ca-cert`, if given.
    pub fn new(config: &RedisConfig, ca: Option<&[u8]>) -> Result<Self, InvalidRedisUrl> {
        let url = config.url.as_str();
        for (scheme, tls) in [("redis+sentinel://", false), ("rediss+sentinel://", true)] {
            if let Some(rest) = url.strip_prefix(scheme) {
                let tls = tls.then(|| Tls {
                    ca: ca.map(<[u8]>::to_vec),
                });
                return Sentinels::parse(rest, tls, config).map(Self::Sentinel);
            }
        }
        let info = url.into_connection_info().map_err(invalid)?;
        if matches!(info.addr(), ConnectionAddr::TcpTls { insecure: true, .. }) {
            return Err(InvalidRedisUrl(
                "`#insecure` is not supported: certificates are always verified (trust a \
                 private CA with --ca-cert)"
                    .into(),
            ));
        }
        let login = with_password(info.redis_settings().clone(), config)?;
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. }).then(|| Tls {
            ca: ca.map(<[u8]>::to_vec),
        });
        let info = info.set_redis_settings(login);
        build(info, tls.as_ref()).map(Self::Direct).map_err(invalid)
    }

    /// A client for the current master.
    pub async fn client(&self) -> RedisResult<Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel(sentinels) => sentinels.master_client().await,
        }
    }
}

impl Sentinels {
    /// `rest` is the URL after its scheme: `[USERINFO@]HOSTS/MASTER`.
    fn parse(rest: &str, tls: Option<Tls>, config: &RedisConfig) -> Result<Self, InvalidRedisUrl> {
        let usage = "expected redis+sentinel://[USER:PASSWORD@]HOST[:PORT][,…]/MASTER";
        let (authority, master) = rest
            .split_once('/')
            .ok_or_else(|| InvalidRedisUrl(usage.into()))?;
        let master = master.trim_end_matches('/').to_owned();
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        // The data nodes' credential, decoded exactly as in a redis:// URL.
        let master_login = match userinfo {
            Some(userinfo) => format!("redis://{userinfo}@localhost/")
                .into_connection_info()
                .map_err(|_| {
                    InvalidRedisUrl("the URL's user name or password is malformed".into())
                })?
                .redis_settings()
                .clone(),
            None => RedisConnectionInfo::default(),
        };
        let nodes = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(parse_node)
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() || master.is_empty() {
            return Err(InvalidRedisUrl(
                "a Sentinel URL needs at least one host and a master name".into(),
            ));
        }
        let mut sentinel_login = RedisConnectionInfo::default();
        if let Some(user) = &config.sentinel_username {
            sentinel_login = sentinel_login.set_username(user);
        }
        if let Some(password) = &config.sentinel_password {
            sentinel_login = sentinel_login.set_password(password);
        }
        Ok(Self {
            nodes,
            master,
            tls,
            sentinel_login,
            master_login: with_password(master_login, config)?,
        })
    }

    /// Asks each Sentinel in turn for the master; a client for the first answer.
    async fn master_client(&self) -> RedisResult<Client> {
        let mut last = None;
        for (host, port) in &self.nodes {
            match self.ask(host, *port).await {
                Ok(client) => return Ok(client),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io_error("no sentinel configured")))
    }

    async fn ask(&self, host: &str, port: u16) -> RedisResult<Client> {
        let sentinel = address(host, port, self.tls.is_some())
            .into_connection_info()?
            .set_redis_settings(self.sentinel_login.clone());
        let ask = async {
            let client = build(sentinel, self.tls.as_ref())?;
            let mut conn = timed(client.get_multiplexed_async_connection()).await?;
            timed(
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn),
            )
            .await
        };
        let (master_host, master_port) = ask
            .await
            .map_err(|e| io_error(&format!("Sentinel {host}:{port}: {}", explain(&e))))?
            .ok_or_else(|| io_error("the sentinel does not know that master"))?;
        let master = address(&master_host, master_port, self.tls.is_some())
            .into_connection_info()?
            .set_redis_settings(self.master_login.clone());
        build(master, self.tls.as_ref())
    }
}

/// `HOST[:PORT]` (`[V6]:PORT` for IPv6) of a Sentinel.
fn parse_node(node: &str) -> Result<(String, u16), InvalidRedisUrl> {
    // Not quoted: in a URL whose password holds an unencoded `/`, this "host" is part of it.
    let bad = || InvalidRedisUrl("a Sentinel address is not HOST[:PORT]".into());
    let (host, port) = match node.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => {
            (host, port.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (node, SENTINEL_PORT),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

fn address(host: &str, port: u16, tls: bool) -> ConnectionAddr {
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}

/// `login` with the password of [`RedisConfig::password`], which a URL that already holds one
/// may not also have.
fn with_password(
    login: RedisConnectionInfo,
    config: &RedisConfig,
) -> Result<RedisConnectionInfo, InvalidRedisUrl> {
    match (&config.password, login.password()) {
        (None, _) => Ok(login),
        (Some(_), Some(_)) => Err(InvalidRedisUrl(
            "the Redis password is given twice, in the URL and in --redis-password-file: \
             keep one"
                .into(),
        )),
        (Some(password), None) => Ok(login.set_password(password)),
    }
}

/// A client whose connections send each request at once, over TLS verified against the
/// configured CA when `tls` is set. redis-rs leaves Nagle's algorithm on by default, which holds
/// back a small request while an earlier one is unacknowledged; every request here is small and
/// latency-bound (routing lookups, wake-ups, announcements).
fn build(info: redis::ConnectionInfo, tls: Option<&Tls>) -> RedisResult<Client> {
    let tcp = redis::io::tcp::TcpSettings::default().set_nodelay(true);
    let info = info.set_tcp_settings(tcp);
    match tls.and_then(|t| t.ca.clone()) {
        Some(ca) => Client::build_with_tls(
            info,
            TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            },
        ),
        None => Client::open(info),
    }
}

fn invalid(e: redis::RedisError) -> InvalidRedisUrl {
    InvalidRedisUrl(e.to_string())
}

/// `e` with what to check first, for the operator reading the log: a refused credential or an
/// untrusted certificate is a configuration mistake, not an outage.
pub(crate) fn explain(e: &redis::RedisError) -> String {
    let hint = match (e.kind(), e.code()) {
        (redis::ErrorKind::AuthenticationFailed, _) | (_, Some("WRONGPASS")) => {
            "Redis refused the user name or password"
        }
        (_, Some("NOAUTH")) => "Redis needs a password and none was given",
        (_, Some("NOPERM")) => "the Redis user lacks a permission StreamSpace needs",
        _ if is_certificate_error(e) => {
            "Redis's TLS certificate was not accepted (is its CA given with --ca-cert, and does \
             the certificate name the address connected to?)"
        }
        _ => return e.to_string(),
    };
    format!("{hint}: {e}")
}

fn is_certificate_error(e: &redis::RedisError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        if err.is::<rustls::Error>() || inner.is_some_and(|i| i.is::<rustls::Error>()) {
            return true;
        }
        source = err.source();
    }
    e.to_string().to_ascii_lowercase().contains("certificate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RedisConfig {
        RedisConfig {
            url: url.to_owned(),
            ..RedisConfig::default()
        }
    }

    fn sentinels(target: Result<Target, InvalidRedisUrl>) -> Sentinels {
        match target {
            Ok(Target::Sentinel(s)) => s,
            other => panic!("not a sentinel target: {other:?}"),
        }
    }

    #[test]
    fn sentinel_urls_name_their_hosts_and_master() {
        let s = sentinels(Target::new(
            &config("redis+sentinel://s1:26380,s2,[::1]:1/mymaster"),
            None,
        ));
        let want = [("s1", 26380), ("s2", 26379), ("::1", 1)];
        let want: Vec<_> = want.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect();
        assert_eq!(s.nodes, want);
        assert_eq!(s.master, "mymaster");
        assert!(s.tls.is_none());
        for bad in [
            "redis+sentinel://s1:26379",
            "redis+sentinel://s1:26379/",
            "redis+sentinel:///m",
            "redis+sentinel://s1:port/m",
            "not a url",
        ] {
            assert!(Target::new(&config(bad), None).is_err(), "{bad} accepted");
        }
        assert!(matches!(
            Target::new(&config("redis://127.0.0.1:6379/"), None),
            Ok(Target::Direct(_))
        ));
    }

    #[test]
    fn the_url_holds_the_data_credential_and_the_flags_the_sentinels() {
        let mut c = config("rediss+sentinel://app:p%40ss@s1/m");
        c.sentinel_username = Some("watch".into());
        c.sentinel_password = Some("sentinel-pw".into());
        let s = sentinels(Target::new(&c, Some(b"ca")));
        assert_eq!(s.master_login.username(), Some("app"));
        assert_eq!(s.master_login.password(), Some("p@ss"));
        assert_eq!(s.sentinel_login.username(), Some("watch"));
        assert_eq!(s.sentinel_login.password(), Some("sentinel-pw"));
        assert_eq!(s.tls.and_then(|t| t.ca).as_deref(), Some(&b"ca"[..]));
    }

    #[test]
    fn a_password_file_fills_in_a_url_without_one_and_never_doubles_it() {
        let mut c = config("redis+sentinel://app@s1/m");
        c.password = Some("from-file".into());
        let s = sentinels(Target::new(&c, None));
        assert_eq!(s.master_login.username(), Some("app"));
        assert_eq!(s.master_login.password(), Some("from-file"));

        c.url = "redis://app:in-url@redis/".into();
        let err = Target::new(&c, None).expect_err("two passwords");
        assert!(err.to_string().contains("given twice"), "{err}");
        assert!(!err.to_string().contains("in-url"), "{err}");
    }

    #[test]
    fn the_configuration_prints_no_password() {
        let c = RedisConfig {
            url: "rediss://app:in-url-pw@redis/".into(),
            password: Some("file-pw".into()),
            sentinel_username: Some("watch".into()),
            sentinel_password: Some("sentinel-pw".into()),
        };
        let printed = format!("{c:?}");
        for secret in ["in-url-pw", "file-pw", "sentinel-pw"] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert!(printed.contains("rediss://app:***@redis/"), "{printed}");
    }

    #[test]
    fn a_malformed_url_is_refused_without_quoting_its_password() {
        // The unencoded `/` ends the authority early: "u:s3cr" looks like a host.
        let err = Target::new(&config("redis+sentinel://u:s3cr/et@s1/m"), None)
            .expect_err("a malformed URL");
        assert!(!err.to_string().contains("s3cr"), "{err}");
    }

    #[test]
    fn verification_cannot_be_turned_off() {
        let err = Target::new(&config("rediss://redis:6380/#insecure"), None)
            .expect_err("an insecure URL");
        assert!(err.to_string().contains("--ca-cert"), "{err}");
        assert!(Target::new(&config("rediss://redis:6380/"), None).is_ok());
    }

    #[test]
    fn refused_credentials_say_so() {
        let e = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "Password authentication failed",
        ));
        assert!(explain(&e).starts_with("Redis refused the user name or password"));
        let e = redis::RedisError::from(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        ));
        assert!(explain(&e).contains("--ca-cert"), "{}", explain(&e));
    }
}
