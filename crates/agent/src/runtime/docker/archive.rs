//! The little of the tar format the Engine API's archive endpoints need: headers for the
//! directories and the one file an upload carries, and a reader of the entries a download or a
//! listing gets back (POSIX ustar, with the PAX and GNU long-name records engines write for long
//! names and large sizes).

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Size of a tar block; headers are one block, data is padded to whole blocks.
pub const BLOCK: u64 = 512;
/// Most bytes of one PAX or GNU long-name record accepted (names are far shorter).
const MAX_RECORD: u64 = 64 * 1024;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    /// Hard links, devices, pipes and the rest: never transferred.
    Other,
}

/// One entry's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path in the archive, without a trailing `/`.
    pub name: String,
    pub kind: EntryKind,
    /// Bytes of data that follow the header.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
}

/// Zero bytes that pad `size` bytes of data to a whole block.
pub fn padding(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// The end of an archive: two zero blocks.
pub fn end() -> Vec<u8> {
    vec![0; 2 * BLOCK as usize]
}

/// The header of a directory (`name` without a trailing `/`) or a file of `size` bytes, owned
/// by root (the engine hands it to the container's user), preceded by a PAX record when the
/// name or the size does not fit the ustar fields.
pub fn header(name: &str, kind: EntryKind, size: u64, mode: u32, mtime: i64) -> Vec<u8> {
    let mut stored = name.to_owned();
    if kind == EntryKind::Directory {
        stored.push('/');
    }
    let mut pax = Vec::new();
    if stored.len() > 100 {
        pax.push(pax_record("path", &stored));
    }
    let size_fits = size < 0o77777777777;
    if !size_fits {
        pax.push(pax_record("size", &size.to_string()));
    }
    let mut out = Vec::new();
    if !pax.is_empty() {
        let body: Vec<u8> = pax.concat();
        out.extend(ustar("pax", b'x', body.len() as u64, 0o644, mtime));
        let len = body.len() as u64;
        out.extend(body);
        out.extend(std::iter::repeat_n(0, padding(len) as usize));
    }
    let typeflag = match kind {
        EntryKind::Directory => b'5',
        _ => b'0',
    };
    let short: String = truncate(&stored, 100);
    out.extend(ustar(
        &short,
        typeflag,
        if size_fits { size } else { 0 },
        mode,
        mtime,
    ));
    out
}

/// `"<len> key=value\n"`, where `len` counts the whole record, its own digits included.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn ustar(name: &str, typeflag: u8, size: u64, mode: u32, mtime: i64) -> [u8; BLOCK as usize] {
    let mut h = [0u8; BLOCK as usize];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], u64::try_from(mtime).unwrap_or(0));
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

/// `value` in octal, zero-padded, NUL-terminated, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    field[..width].copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
    field[width] = 0;
}

fn bad(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// A numeric field: octal text, or GNU's base-256 when its top bit is set.
fn number(field: &[u8]) -> io::Result<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            value = value
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(*b)))
                .ok_or_else(|| bad("a tar number is too large"))?;
        }
        return Ok(value);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| char::from(*b))
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| bad(format!("a bad tar number {text:?}")))
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Reads and throws away `n` bytes.
pub async fn skip<R: AsyncRead + Unpin>(reader: &mut R, n: u64) -> io::Result<()> {
    let copied = tokio::io::copy(&mut reader.take(n), &mut tokio::io::sink()).await?;
    if copied != n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

async fn record<R: AsyncRead + Unpin>(reader: &mut R, size: u64) -> io::Result<Vec<u8>> {
    if size > MAX_RECORD {
        return Err(bad("a tar extension record is too large"));
    }
    let mut body = vec![0; usize::try_from(size).map_err(|_| bad("record size"))?];
    reader.read_exact(&mut body).await?;
    skip(reader, padding(size)).await?;
    Ok(body)
}

/// The next entry's header, or `None` at the end of the archive (a zero block, or the end of
/// the stream). The caller then reads or [`skip`]s its `size` bytes and their [`padding`].
pub async fn next<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Entry>> {
    let (mut long_name, mut pax_path, mut pax_size, mut pax_mtime) = (None, None, None, None);
    loop {
        let mut h = [0u8; BLOCK as usize];
        match reader.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        if h.iter().all(|b| *b == 0) {
            return Ok(None);
        }
        let stored = number(&h[148..156])?;
        let mut sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        sum -= h[148..156].iter().map(|b| u64::from(*b)).sum::<u64>();
        sum += 8 * u64::from(b' ');
        if sum != stored {
            return Err(bad("a tar header's checksum does not match"));
        }
        let size = number(&h[124..136])?;
        match h[156] {
            b'x' => {
                let body = record(reader, size).await?;
                for (key, value) in pax_records(&body)? {
                    match key.as_str() {
                        "path" => pax_path = Some(value),
                        "size" => {
                            pax_size = Some(value.parse().map_err(|_| bad("a bad PAX size"))?);
                        }
                        "mtime" => {
                            let whole = value.split('.').next().unwrap_or_default();
                            pax_mtime = whole.parse().ok();
                        }
                        _ => {}
                    }
                }
            }
            b'L' => {
                let body = record(reader, size).await?;
                long_name = Some(text(&body));
            }
            b'g' | b'K' => {
                record(reader, size).await?;
            }
            flag => {
                let mut name = text(&h[..100]);
                if &h[257..262] == b"ustar" {
                    let prefix = text(&h[345..500]);
                    if !prefix.is_empty() {
                        name = format!("{prefix}/{name}");
                    }
                }
                let name = pax_path.or(long_name).unwrap_or(name);
                let kind = match flag {
                    b'0' | 0 | b'7' if !name.ends_with('/') => EntryKind::File,
                    b'5' | b'0' | 0 => EntryKind::Directory,
                    b'2' => EntryKind::Symlink,
                    _ => EntryKind::Other,
                };
                let mtime = pax_mtime
                    .or_else(|| {
                        number(&h[136..148])
                            .ok()
                            .and_then(|m| i64::try_from(m).ok())
                    })
                    .unwrap_or(0);
                return Ok(Some(Entry {
                    name: name.trim_end_matches('/').to_owned(),
                    kind,
                    size: pax_size.unwrap_or(size),
                    mtime,
                }));
            }
        }
    }
}

/// The `key=value` records of a PAX extended header.
fn pax_records(mut body: &[u8]) -> io::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let space = body
            .iter()
            .position(|b| *b == b' ')
            .ok_or_else(|| bad("a bad PAX record"))?;
        let len: usize = std::str::from_utf8(&body[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .filter(|l| *l > space && *l <= body.len())
            .ok_or_else(|| bad("a bad PAX record length"))?;
        let record = &body[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let text = String::from_utf8_lossy(record);
        if let Some((key, value)) = text.split_once('=') {
            out.push((key.to_owned(), value.to_owned()));
        }
        body = &body[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn entries(archive: &[u8]) -> io::Result<Vec<(Entry, Vec<u8>)>> {
        let mut reader = archive;
        let mut out = Vec::new();
        while let Some(entry) = next(&mut reader).await? {
            let mut data = vec![0; usize::try_from(entry.size).unwrap_or(0)];
            reader.read_exact(&mut data).await?;
            skip(&mut reader, padding(entry.size)).await?;
            out.push((entry, data));
        }
        Ok(out)
    }

    fn file(name: &str, body: &[u8]) -> Vec<u8> {
        let mut out = header(
            name,
            EntryKind::File,
            body.len() as u64,
            0o644,
            1_700_000_000,
        );
        out.extend_from_slice(body);
        out.extend(std::iter::repeat_n(0, padding(body.len() as u64) as usize));
        out
    }

    #[tokio::test]
    async fn what_is_written_reads_back() -> anyhow::Result<()> {
        let long = format!("Transfers/{}/{}", "d".repeat(80), "f".repeat(60));
        let mut archive = header("Transfers", EntryKind::Directory, 0, 0o700, 1_700_000_000);
        archive.extend(file("Transfers/a.txt", b"hello"));
        archive.extend(file(&long, b"deep"));
        archive.extend(end());
        let read = entries(&archive).await?;
        let summary: Vec<(&str, EntryKind, &[u8])> = read
            .iter()
            .map(|(e, d)| (e.name.as_str(), e.kind, d.as_slice()))
            .collect();
        assert_eq!(
            summary,
            [
                ("Transfers", EntryKind::Directory, &b""[..]),
                ("Transfers/a.txt", EntryKind::File, &b"hello"[..]),
                (long.as_str(), EntryKind::File, &b"deep"[..]),
            ]
        );
        assert_eq!(read[1].0.mtime, 1_700_000_000);
        Ok(())
    }

    /// What GNU tar (a different writer) makes of our archive, and we of its.
    #[tokio::test]
    async fn agrees_with_gnu_tar() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let long = format!("{}/{}", "x".repeat(120), "y".repeat(40));
        let mut archive = header("t", EntryKind::Directory, 0, 0o755, 1_700_000_000);
        archive.extend(header(
            &format!("t/{}", "x".repeat(120)),
            EntryKind::Directory,
            0,
            0o755,
            1_700_000_000,
        ));
        archive.extend(file(&format!("t/{long}"), b"from us"));
        archive.extend(end());
        std::fs::write(dir.path().join("ours.tar"), &archive)?;
        let status = std::process::Command::new("tar")
            .current_dir(dir.path())
            .args(["-xf", "ours.tar"])
            .status()?;
        assert!(status.success());
        assert_eq!(std::fs::read(dir.path().join("t").join(&long))?, b"from us");

        std::os::unix::fs::symlink("/etc", dir.path().join("t/link"))?;
        let status = std::process::Command::new("tar")
            .current_dir(dir.path())
            .args(["--format=pax", "-cf", "theirs.tar", "t"])
            .status()?;
        assert!(status.success());
        let theirs = std::fs::read(dir.path().join("theirs.tar"))?;
        let mut read: Vec<(String, EntryKind)> = entries(&theirs)
            .await?
            .into_iter()
            .map(|(e, _)| (e.name, e.kind))
            .collect();
        read.sort_by(|a, b| a.0.cmp(&b.0));
        let x = format!("t/{}", "x".repeat(120));
        assert_eq!(
            read,
            [
                ("t".to_owned(), EntryKind::Directory),
                ("t/link".to_owned(), EntryKind::Symlink),
                (x.clone(), EntryKind::Directory),
                (format!("t/{long}"), EntryKind::File),
            ]
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_damaged_header_is_refused() {
        let mut archive = file("a", b"x");
        archive[0] = b'b';
        let mut reader = archive.as_slice();
        assert!(next(&mut reader).await.is_err());
    }

    #[test]
    fn pax_records_count_their_own_length() {
        for value in ["", "a", &"v".repeat(90), &"w".repeat(995)] {
            let r = pax_record("path", value);
            let len: usize = String::from_utf8_lossy(&r)
                .split(' ')
                .next()
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            assert_eq!(len, r.len(), "{value:?}");
        }
    }
}
