//! The docker runtime against a real Docker-compatible engine: Podman's Docker API socket,
//! started by each test with its own storage, and a busybox session image built locally whose
//! stand-in VNC server answers with the RFB banner. What the runtime asked for (labels, limits,
//! ports, volumes) is checked through the engine's own API.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bollard::Docker;
use bollard::models::ContainerStateStatusEnum;
use futures_util::{SinkExt, StreamExt};
use streamspace_agent::runtime::docker::{
    AGENT_LABEL, SESSION_LABEL, USER_HOME_LABEL, container_name, user_volume_name, volume_name,
};
use streamspace_agent::runtime::{DockerRuntime, DockerRuntimeConfig, Runtime, RuntimeError};
use streamspace_proto::SessionState;
use streamspace_proto::api::{CreateTemplate, HomePolicy, Template, TemplateResources};
use streamspace_proto::transfer::{FileKind, Frame, TransferDirection, failure_code};
use streamspace_proto::wire::TransferOpen;
use streamspace_testkit::Podman;
use streamspace_testkit::vnc::read_rfb_banner;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const IMAGE: &str = "localhost/streamspace-session:test";

fn engine() -> Result<Podman> {
    let podman = Podman::start()?;
    podman.import_session_image(IMAGE)?;
    Ok(podman)
}

fn runtime(podman: &Podman, agent_id: &str) -> Result<DockerRuntime> {
    let mut config = DockerRuntimeConfig::new(agent_id);
    config.host = Some(podman.docker_host());
    config.ready_timeout = Duration::from_secs(30);
    // The stand-in's shell ignores SIGTERM: do not wait long for it.
    config.stop_timeout = Duration::from_secs(1);
    config.orphan_grace = Duration::ZERO;
    Ok(DockerRuntime::new(config)?)
}

fn template(home: HomePolicy) -> Template {
    Template::new(
        CreateTemplate {
            name: "desk".into(),
            image: Some(IMAGE.into()),
            resources: TemplateResources {
                cpu_millis: Some(500),
                memory_mib: Some(64),
            },
            persistent_home: home,
            env: [("GREETING".to_string(), "hello".to_string())].into(),
            ..Default::default()
        },
        chrono::Utc::now(),
    )
}

fn api(podman: &Podman) -> Result<Docker> {
    Ok(Docker::connect_with_host(&podman.docker_host())?)
}

async fn answers_rfb(address: &str) -> Result<()> {
    let banner = read_rfb_banner(address)
        .await
        .with_context(|| format!("no VNC on {address}"))?;
    ensure!(
        banner.starts_with("RFB "),
        "banner {banner:?} from {address}"
    );
    Ok(())
}

async fn container_status(docker: &Docker, id: Uuid) -> Result<Option<ContainerStateStatusEnum>> {
    match docker.inspect_container(&container_name(id), None).await {
        Ok(c) => Ok(c.state.and_then(|s| s.status)),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn volume_exists(docker: &Docker, id: Uuid) -> Result<bool> {
    match docker.inspect_volume(&volume_name(id)).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn start_hibernate_wake_stop_with_labels_limits_and_home_volume() -> Result<()> {
    let podman = engine()?;
    let docker = api(&podman)?;
    let rt = runtime(&podman, "dock-1")?;
    let id = Uuid::now_v7();

    let started = rt.start(id, &template(HomePolicy::Delete)).await?;
    ensure!(started.state == SessionState::Running, "{started:?}");
    ensure!(started.vnc_address.starts_with("127.0.0.1:"), "{started:?}");
    answers_rfb(&started.vnc_address).await?;
    let again = rt.start(id, &template(HomePolicy::Delete)).await?;
    ensure!(
        again.vnc_address == started.vnc_address,
        "a repeated start changed the session"
    );

    let inspected = docker.inspect_container(&container_name(id), None).await?;
    let labels = inspected
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default();
    ensure!(
        labels.get(SESSION_LABEL) == Some(&id.to_string()),
        "labels {labels:?}"
    );
    ensure!(
        labels.get(AGENT_LABEL).map(String::as_str) == Some("dock-1"),
        "labels {labels:?}"
    );
    let env = inspected
        .config
        .as_ref()
        .and_then(|c| c.env.clone())
        .unwrap_or_default();
    ensure!(env.iter().any(|e| e == "GREETING=hello"), "env {env:?}");
    let host = inspected.host_config.clone().unwrap_or_default();
    ensure!(
        host.nano_cpus == Some(500_000_000),
        "cpu limit {:?}",
        host.nano_cpus
    );
    ensure!(
        host.memory == Some(64 * 1024 * 1024),
        "memory limit {:?}",
        host.memory
    );
    ensure!(volume_exists(&docker, id).await?, "no home volume");
    ensure!(
        host.security_opt
            .iter()
            .flatten()
            .any(|o| o.starts_with("no-new-privileges")),
        "no-new-privileges missing: {:?}",
        host.security_opt
    );
    ensure!(
        host.pids_limit == Some(4096),
        "pids limit {:?}",
        host.pids_limit
    );
    confined_as_a_desktop(&podman, id)?;

    let hibernated = rt.hibernate(id).await?;
    ensure!(
        hibernated.state == SessionState::Hibernated,
        "{hibernated:?}"
    );
    ensure!(
        container_status(&docker, id).await? == Some(ContainerStateStatusEnum::PAUSED),
        "hibernate did not pause the container"
    );
    ensure!(rt.hibernate(id).await?.state == SessionState::Hibernated);
    let woken = rt.wake(id).await?;
    ensure!(woken.state == SessionState::Running, "{woken:?}");
    answers_rfb(&woken.vnc_address).await?;

    rt.stop(id).await?;
    ensure!(
        container_status(&docker, id).await?.is_none(),
        "container left after stop"
    );
    ensure!(
        !volume_exists(&docker, id).await?,
        "a `delete` home volume survived stop"
    );
    rt.stop(id).await?;
    ensure!(rt.status(id).await?.is_none());
    Ok(())
}

/// What the kernel says about the session's first process: only the desktop's capabilities
/// (CHOWN, DAC_OVERRIDE, FOWNER, KILL, SETGID, SETUID: bits 0, 1, 3, 5, 6, 7) in every set, and
/// no new privileges.
fn confined_as_a_desktop(podman: &Podman, id: Uuid) -> Result<()> {
    let status = podman.run(&["exec", &container_name(id), "cat", "/proc/1/status"])?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .with_context(|| format!("no {name} in {status}"))
    };
    for set in ["CapBnd:", "CapPrm:", "CapEff:"] {
        let bits = u64::from_str_radix(field(set)?, 16)?;
        ensure!(
            bits == 0b1110_1011,
            "{set} {bits:#x}: not the desktop's capabilities"
        );
    }
    ensure!(field("NoNewPrivs:")? == "1", "no-new-privileges is off");
    Ok(())
}

#[tokio::test]
async fn a_read_only_root_leaves_scratch_directories_and_the_home_writable() -> Result<()> {
    let podman = engine()?;
    let docker = api(&podman)?;
    let mut config = DockerRuntimeConfig::new("dock-ro");
    config.host = Some(podman.docker_host());
    config.ready_timeout = Duration::from_secs(30);
    config.stop_timeout = Duration::from_secs(1);
    config.confinement.read_only_root = true;
    config.confinement.pids_limit = 64;
    let rt = DockerRuntime::new(config)?;
    let id = Uuid::now_v7();

    let started = rt.start(id, &template(HomePolicy::None)).await?;
    answers_rfb(&started.vnc_address).await?;
    let host = docker
        .inspect_container(&container_name(id), None)
        .await?
        .host_config
        .unwrap_or_default();
    ensure!(host.readonly_rootfs == Some(true), "{host:?}");
    ensure!(host.pids_limit == Some(64), "{:?}", host.pids_limit);
    let name = container_name(id);
    for dir in ["/tmp", "/var/tmp", "/run", "/home"] {
        let file = format!("{dir}/written");
        podman
            .run(&["exec", &name, "touch", &file])
            .with_context(|| format!("{dir} is not writable"))?;
    }
    ensure!(
        podman
            .run(&["exec", &name, "touch", "/etc/written"])
            .is_err(),
        "the root file system is writable"
    );
    rt.stop(id).await?;
    Ok(())
}

#[tokio::test]
async fn templates_without_an_image_or_with_a_missing_one_fail_clearly() -> Result<()> {
    let podman = engine()?;
    let rt = runtime(&podman, "dock-1")?;
    let mut no_image = template(HomePolicy::None);
    no_image.image = None;
    match rt.start(Uuid::now_v7(), &no_image).await {
        Err(RuntimeError::InvalidTemplate(m)) if m.contains("no image") => {}
        other => bail!("a template without an image gave {other:?}"),
    }
    let mut missing = template(HomePolicy::Retain);
    missing.image = Some("localhost/no-such-image:1".into());
    let id = Uuid::now_v7();
    match rt.start(id, &missing).await {
        Err(RuntimeError::ImagePull { image, .. }) if image.contains("no-such-image") => {}
        other => bail!("a missing image gave {other:?}"),
    }
    ensure!(
        rt.status(id).await?.is_none(),
        "a failed start left a container"
    );
    Ok(())
}

#[tokio::test]
async fn a_restarted_agent_adopts_its_containers_and_cleans_up_the_rest() -> Result<()> {
    let podman = engine()?;
    let docker = api(&podman)?;
    let before = runtime(&podman, "dock-1")?;
    let running = Uuid::now_v7();
    let hibernated = Uuid::now_v7();
    let died = Uuid::now_v7();
    for id in [running, hibernated, died] {
        before.start(id, &template(HomePolicy::Retain)).await?;
    }
    before.hibernate(hibernated).await?;
    podman.run(&["kill", &container_name(died)])?;
    // A start cut short after create, and a container of another agent.
    let orphan = Uuid::now_v7();
    let create = |agent: &str, id: Uuid| -> Result<String> {
        podman.run(&[
            "create",
            "--name",
            &container_name(id),
            "--label",
            &format!("{AGENT_LABEL}={agent}"),
            "--label",
            &format!("{SESSION_LABEL}={id}"),
            IMAGE,
        ])
    };
    create("dock-1", orphan)?;
    let foreign = Uuid::now_v7();
    create("dock-2", foreign)?;
    drop(before);

    let after = runtime(&podman, "dock-1")?;
    let mut recovered = after.recover().await?;
    recovered.sort_by_key(|s| s.session_id);
    let states: Vec<(Uuid, SessionState)> =
        recovered.iter().map(|s| (s.session_id, s.state)).collect();
    let mut expected = vec![
        (running, SessionState::Running),
        (hibernated, SessionState::Hibernated),
        (died, SessionState::Failed),
    ];
    expected.sort_by_key(|(id, _)| *id);
    ensure!(
        states == expected,
        "recovered {states:?}, expected {expected:?}"
    );
    answers_rfb(&after.vnc_address(running).await?.context("no address")?).await?;
    ensure!(
        container_status(&docker, died).await?.is_none(),
        "the dead container was kept"
    );
    ensure!(
        volume_exists(&docker, died).await?,
        "a `retain` volume was removed"
    );
    ensure!(
        container_status(&docker, orphan).await?.is_none(),
        "the orphan was kept"
    );
    ensure!(
        container_status(&docker, foreign).await?.is_some(),
        "another agent's container was touched"
    );
    let woken = after.wake(hibernated).await?;
    answers_rfb(&woken.vnc_address).await?;
    let listed = after.list().await?.len();
    ensure!(listed == 2, "list shows {listed} sessions, expected 2");
    Ok(())
}

#[tokio::test]
async fn a_session_being_stopped_is_never_reported_failed() -> Result<()> {
    let podman = engine()?;
    let mut config = DockerRuntimeConfig::new("dock-1");
    config.host = Some(podman.docker_host());
    config.stop_timeout = Duration::from_secs(3);
    let rt = std::sync::Arc::new(DockerRuntime::new(config)?);
    let mut slow = template(HomePolicy::None);
    // nc as PID 1 ignores SIGTERM: the stop waits for its timeout, then kills.
    slow.command = ["nc", "-ll", "-p", "5901", "-e", "/bin/rfb"]
        .map(String::from)
        .to_vec();
    let id = Uuid::now_v7();
    rt.start(id, &slow).await?;
    let stopping = tokio::spawn({
        let rt = rt.clone();
        async move { rt.stop(id).await }
    });
    while !stopping.is_finished() {
        for s in rt.list().await? {
            ensure!(
                s.state != SessionState::Failed,
                "a session being stopped was reported failed: {s:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stopping.await??;
    ensure!(
        rt.status(id).await?.is_none(),
        "the container survived stop"
    );
    Ok(())
}

async fn user_volume_exists(docker: &Docker, user: Uuid) -> Result<bool> {
    match docker.inspect_volume(&user_volume_name(user)).await {
        Ok(_) => Ok(true),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn a_users_home_follows_them_from_session_to_session_and_no_one_else() -> Result<()> {
    let podman = engine()?;
    let docker = api(&podman)?;
    let rt = runtime(&podman, "dock-1")?;
    ensure!(rt.user_homes(), "the docker runtime keeps user homes");
    let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
    let home = template(HomePolicy::User);
    match rt.start(Uuid::now_v7(), &home).await {
        Err(RuntimeError::InvalidTemplate(_)) => {}
        other => bail!("a user-home template started without a user: {other:?}"),
    }

    let first = Uuid::now_v7();
    rt.start_with_user_home(first, &home, alice).await?;
    podman.run(&[
        "exec",
        &container_name(first),
        "sh",
        "-c",
        "echo kept > /home/notes.txt",
    ])?;
    let labels = docker
        .inspect_volume(&user_volume_name(alice))
        .await?
        .labels;
    ensure!(
        labels.get(USER_HOME_LABEL) == Some(&alice.to_string()),
        "volume labels {labels:?}"
    );
    match rt.delete_user_home(alice).await {
        Err(RuntimeError::HomeInUse(message)) if message.contains(&first.to_string()) => {}
        other => bail!("deleting a home in use gave {other:?}"),
    }
    rt.stop(first).await?;
    ensure!(
        user_volume_exists(&docker, alice).await?,
        "stopping the session removed the user's home"
    );

    let next = Uuid::now_v7();
    rt.start_with_user_home(next, &home, alice).await?;
    let read = podman.run(&["exec", &container_name(next), "cat", "/home/notes.txt"])?;
    ensure!(read.trim() == "kept", "the next session read {read:?}");
    let other = Uuid::now_v7();
    rt.start_with_user_home(other, &home, bob).await?;
    ensure!(
        podman
            .run(&["exec", &container_name(other), "cat", "/home/notes.txt"])
            .is_err(),
        "another user's session sees the file"
    );
    for id in [next, other] {
        rt.stop(id).await?;
    }

    rt.delete_user_home(alice).await?;
    ensure!(
        !user_volume_exists(&docker, alice).await?,
        "delete left the user's home"
    );
    ensure!(
        user_volume_exists(&docker, bob).await?,
        "delete removed another user's home"
    );
    rt.delete_user_home(alice).await?;
    Ok(())
}

/// One transfer through the agent's real code path (`transfer::carry` over a WebSocket, as the
/// control plane drives it): sends `upload` (data frames, then `end`) once the agent is ready,
/// and returns every frame the agent sent.
async fn transfer(
    rt: &DockerRuntime,
    session_id: Uuid,
    direction: TransferDirection,
    path: &str,
    upload: &[u8],
    max_bytes: u64,
) -> Result<Vec<Frame>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let open = TransferOpen {
        transfer_id: Uuid::now_v7(),
        session_id,
        token: "t".into(),
        direction,
        path: path.into(),
        max_bytes,
    };
    let agent = async {
        let tcp = tokio::net::TcpStream::connect(address).await?;
        let (socket, _) = tokio_tungstenite::client_async(
            format!("ws://{address}/"),
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
        )
        .await?;
        streamspace_agent::transfer::carry(rt, &open, socket).await;
        anyhow::Ok(())
    };
    let control_plane = async {
        let (tcp, _) = listener.accept().await?;
        let mut socket = tokio_tungstenite::accept_async(tcp).await?;
        let mut frames = Vec::new();
        while let Some(message) = socket.next().await {
            let Message::Binary(bytes) = message? else {
                continue;
            };
            let frame = Frame::decode(&bytes)?;
            if frame == Frame::Ready {
                for chunk in upload.chunks(1000) {
                    socket
                        .send(Message::binary(Frame::encode_data(chunk)))
                        .await?;
                }
                socket.send(Message::binary(Frame::End.encode())).await?;
            }
            frames.push(frame);
        }
        anyhow::Ok(frames)
    };
    let ((), frames) = tokio::try_join!(agent, control_plane)?;
    Ok(frames)
}

fn failure_of(frames: &[Frame]) -> Option<&str> {
    frames.iter().find_map(|f| match f {
        Frame::Error(failure) => Some(failure.code.as_str()),
        _ => None,
    })
}

#[tokio::test]
async fn files_go_into_and_out_of_a_session_container() -> Result<()> {
    let podman = engine()?;
    let rt = runtime(&podman, "dock-1")?;
    let mut desk = template(HomePolicy::Delete);
    desk.env.insert("HOME".into(), "/home".into());
    let id = Uuid::now_v7();
    rt.start(id, &desk).await?;
    let name = container_name(id);
    let max = 1 << 20;

    let listed = transfer(&rt, id, TransferDirection::List, "", b"", max).await?;
    ensure!(
        matches!(listed.as_slice(), [Frame::Listing(l)] if l.entries.is_empty()),
        "a new session lists {listed:?}"
    );
    let body: Vec<u8> = (0..5000u32).flat_map(|i| i.to_le_bytes()).collect();
    let up = transfer(
        &rt,
        id,
        TransferDirection::Upload,
        "docs/deep/a.bin",
        &body,
        max,
    )
    .await?;
    ensure!(
        up == [Frame::Ready, Frame::Done { bytes: 20000 }],
        "upload answered {up:?}"
    );
    let inside = podman.run(&["exec", &name, "ls", "-ln", "/home/Transfers/docs/deep"])?;
    ensure!(
        inside.contains("20000") && inside.contains("a.bin"),
        "{inside}"
    );
    let mode = podman.run(&["exec", &name, "ls", "-ldn", "/home/Transfers"])?;
    ensure!(mode.starts_with("drwx------"), "the folder is {mode}");
    transfer(&rt, id, TransferDirection::Upload, "top.txt", b"top", max).await?;
    podman.run(&["exec", &name, "sh", "-c", "mkdir /home/Transfers/empty"])?;

    let listed = transfer(&rt, id, TransferDirection::List, "", b"", max).await?;
    let [Frame::Listing(listing)] = listed.as_slice() else {
        bail!("list answered {listed:?}");
    };
    let entries: Vec<(&str, FileKind, u64)> = listing
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.kind, e.size))
        .collect();
    ensure!(
        entries
            == [
                ("docs", FileKind::Directory, 0),
                ("empty", FileKind::Directory, 0),
                ("top.txt", FileKind::File, 3),
            ],
        "listed {entries:?}"
    );

    let down = transfer(
        &rt,
        id,
        TransferDirection::Download,
        "docs/deep/a.bin",
        b"",
        max,
    )
    .await?;
    let (first, rest) = down.split_first().context("no frames")?;
    ensure!(*first == Frame::Header { size: 20000 }, "{first:?}");
    let got: Vec<u8> = rest
        .iter()
        .filter_map(|f| match f {
            Frame::Data(d) => Some(d.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    ensure!(got == body, "the downloaded bytes differ");
    ensure!(
        rest.last() == Some(&Frame::Done { bytes: 20000 }),
        "{rest:?}"
    );

    // Replacing a file, and what may not be replaced.
    transfer(&rt, id, TransferDirection::Upload, "top.txt", b"again", max).await?;
    let read = podman.run(&["exec", &name, "cat", "/home/Transfers/top.txt"])?;
    ensure!(read == "again", "replaced with {read:?}");
    let up = transfer(&rt, id, TransferDirection::Upload, "empty", b"x", max).await?;
    ensure!(
        failure_of(&up) == Some(failure_code::INVALID_PATH),
        "{up:?}"
    );
    let down = transfer(&rt, id, TransferDirection::Download, "missing", b"", max).await?;
    ensure!(
        failure_of(&down) == Some(failure_code::NOT_FOUND),
        "{down:?}"
    );
    let down = transfer(
        &rt,
        id,
        TransferDirection::Download,
        "../etc/passwd",
        b"",
        max,
    )
    .await?;
    ensure!(
        failure_of(&down) == Some(failure_code::INVALID_PATH),
        "{down:?}"
    );
    rt.stop(id).await?;
    Ok(())
}

#[tokio::test]
async fn links_out_of_the_folder_and_oversize_uploads_are_refused() -> Result<()> {
    let podman = engine()?;
    let rt = runtime(&podman, "dock-1")?;
    let mut desk = template(HomePolicy::None);
    desk.env.insert("HOME".into(), "/home".into());
    let id = Uuid::now_v7();
    rt.start(id, &desk).await?;
    let name = container_name(id);
    let max = 1 << 20;
    podman.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "mkdir -p /home/Transfers && echo secret > /secret && chmod 600 /secret \
         && ln -s / /home/Transfers/root && ln -s /secret /home/Transfers/s",
    ])?;
    for path in ["root/secret", "s", "root/etc/passwd"] {
        let down = transfer(&rt, id, TransferDirection::Download, path, b"", max).await?;
        ensure!(
            failure_of(&down) == Some(failure_code::INVALID_PATH),
            "download of {path}: {down:?}"
        );
        ensure!(
            !down.iter().any(|f| matches!(f, Frame::Data(_))),
            "{path}: bytes came out"
        );
    }
    for path in ["root/planted", "s", "root/tmp/planted"] {
        let up = transfer(&rt, id, TransferDirection::Upload, path, b"x", max).await?;
        ensure!(
            failure_of(&up) == Some(failure_code::INVALID_PATH),
            "upload to {path}: {up:?}"
        );
    }
    let read = podman.run(&["exec", &name, "cat", "/secret"])?;
    ensure!(
        read.trim() == "secret",
        "the link's target changed: {read:?}"
    );
    let stray = podman.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "ls /planted /tmp/planted 2>&1 || true",
    ])?;
    ensure!(
        stray.contains("No such file"),
        "something was planted: {stray}"
    );

    // The folder itself a link: nothing through it either.
    podman.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "rm -rf /home/Transfers && ln -s /tmp /home/Transfers",
    ])?;
    let listed = transfer(&rt, id, TransferDirection::List, "", b"", max).await?;
    ensure!(
        failure_of(&listed) == Some(failure_code::INVALID_PATH),
        "{listed:?}"
    );
    let up = transfer(&rt, id, TransferDirection::Upload, "new", b"x", max).await?;
    ensure!(
        failure_of(&up) == Some(failure_code::INVALID_PATH),
        "{up:?}"
    );

    // Over the limit: refused while streaming, and nothing is left in the container.
    podman.run(&[
        "exec",
        &name,
        "sh",
        "-c",
        "rm /home/Transfers && mkdir /home/Transfers",
    ])?;
    let big = vec![7u8; 5000];
    let up = transfer(&rt, id, TransferDirection::Upload, "big.bin", &big, 4096).await?;
    ensure!(failure_of(&up) == Some(failure_code::TOO_LARGE), "{up:?}");
    let left = podman.run(&["exec", &name, "ls", "-A", "/home/Transfers"])?;
    ensure!(left.trim().is_empty(), "an over-size upload left {left:?}");
    rt.stop(id).await?;
    Ok(())
}
