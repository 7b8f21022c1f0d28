//! `ssmsend` against an AMS and an ARGO authentication service that attack
//! it (issue 11): redirects to another origin from authx509 and from
//! publish, bodies that never end, and 401 pages echoing the token.
//!
//! Both services are scripted TLS servers on 127.0.0.1 (certificate of the
//! test CA, asking for a client certificate and recording whether one came),
//! beside a third, "elsewhere", that records every connection. Every case
//! asserts: the exit code; nothing reached elsewhere (no connection, so no
//! token and no client certificate); every message still queued; no byte of
//! a file outside the spool was sent; no token in the log; the run's time,
//! under `ulimit -v` where memory is the point.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_accounting::spool::Layout;
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslStream, SslVerifyMode};

use crate::support::pki::{Identity, Pki};
use crate::support::send;
use crate::support::send::{SenderCfg, Spooled, message};

/// The token the scripted authx509 hands out: never to be printed or sent
/// elsewhere.
const TOKEN: &str = "ams-T0ken-5ecret-77c1";
/// Planted outside the spool: no byte of it may be sent.
const OUTSIDE: &str = "OUTSIDE-THE-SPOOL-3b1f";
const VMEM_KB: u64 = 1_000_000;
const BOUND: Duration = Duration::from_secs(90);

/// What a scripted server answers to a request (method, path, headers).
type Script = dyn Fn(&str, &str) -> Answer + Send + Sync;

enum Answer {
    /// Status line and body.
    Json(u16, String),
    Redirect(u16, String),
    /// A chunked body that never ends.
    Endless,
    /// A 401 echoing the request's headers and then control bytes, `n` bytes.
    Garbage401(usize),
}

/// Every connection a scripted TLS server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    client_certificates: usize,
    bytes: Vec<u8>,
}

struct Server {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl Server {
    fn start(identity: &Identity, script: Arc<Script>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        builder
            .set_certificate_chain_file(&identity.cert_path)
            .unwrap();
        builder
            .set_private_key_file(&identity.key_path, SslFiletype::PEM)
            .unwrap();
        // Ask for a client certificate, accept any: to see whether one comes.
        builder.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        let acceptor = Arc::new(builder.build());
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (acceptor, seen, script) = (acceptor.clone(), s.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &acceptor, &seen, &*script));
            }
        });
        Server { port, seen }
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }
}

fn serve(stream: TcpStream, acceptor: &SslAcceptor, seen: &Mutex<Seen>, script: &Script) {
    seen.lock().unwrap().connections += 1;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut tls) = acceptor.accept(stream) else {
        return;
    };
    if tls.ssl().peer_certificate().is_some() {
        seen.lock().unwrap().client_certificates += 1;
    }
    while let Some((head, body)) = read_request(&mut tls) {
        {
            let mut s = seen.lock().unwrap();
            s.bytes.extend_from_slice(head.as_bytes());
            s.bytes.extend_from_slice(&body);
        }
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        if !answer(&mut tls, &head, script(method, path)) {
            return;
        }
    }
}

/// Head and body of one request, or `None` at the end of the connection.
fn read_request(tls: &mut SslStream<TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tls.read(&mut byte).ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let length = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).ok()?;
    Some((head, body))
}

/// Writes the answer; false when the connection is done.
fn answer(tls: &mut SslStream<TcpStream>, head: &str, a: Answer) -> bool {
    let reply = |status: u16, extra: &str, body: &[u8]| {
        let mut r = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let bytes = match a {
        Answer::Json(status, body) => reply(status, "", body.as_bytes()),
        Answer::Redirect(status, location) => {
            reply(status, &format!("Location: {location}\r\n"), b"")
        }
        Answer::Garbage401(n) => {
            let mut body = head.as_bytes().to_vec();
            while body.len() < n {
                body.extend_from_slice(b"\x1b[2J\x1b[31mPWNED\r\n\x00\x07\xff<html>");
            }
            reply(401, "", &body)
        }
        Answer::Endless => {
            let _ = tls.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            );
            let chunk = format!("10000\r\n{}\r\n", "0".repeat(0x10000));
            while tls.write_all(chunk.as_bytes()).is_ok() {}
            return false;
        }
    };
    tls.write_all(&bytes).is_ok()
}

/// A test PKI, a queue of messages, a file outside the spool, and
/// "elsewhere".
struct Setup {
    pki: Pki,
    host: Identity,
    server: Identity,
    dir: tempfile::TempDir,
    queue: PathBuf,
    names: Vec<String>,
    elsewhere: Server,
}

impl Setup {
    fn new() -> Setup {
        let pki = Pki::new();
        let host = pki.host();
        let server = pki.server();
        let Spooled {
            dir, queue, names, ..
        } = Spooled::dirq((0..5).map(|i| message(i, 2_000)).collect());
        std::fs::write(dir.path().join("outside.txt"), OUTSIDE).unwrap();
        let elsewhere = Server::start(
            &server,
            Arc::new(|_: &str, _: &str| {
                Answer::Json(200, r#"{"token": "x", "messageIds": ["1"]}"#.into())
            }),
        );
        Setup {
            pki,
            host,
            server,
            dir,
            queue,
            names,
            elsewhere,
        }
    }

    fn elsewhere_url(&self) -> String {
        format!("https://127.0.0.1:{}/v1/somewhere", self.elsewhere.port)
    }

    /// One scripted server for both AMS and authx509.
    fn ams(&self, script: impl Fn(&str, &str) -> Answer + Send + Sync + 'static) -> Server {
        Server::start(&self.server, Arc::new(script))
    }

    fn cfg(&self, ams: &Server) -> SenderCfg {
        SenderCfg::ams(ams.port, ams.port, "accounting", "eu-egi-cloud-accounting")
            .credentials(&self.host.cert_path, &self.host.key_path, self.pki.capath())
            .queue(&self.queue, Layout::Dirq)
            .set("sender", "receipt_timeout", "30s")
    }

    /// ssmsend, optionally under `ulimit -v`; returns exit code and log.
    fn run(&self, cfg: SenderCfg, limit_memory: bool) -> (i32, String, Duration) {
        let path = cfg.write(&self.dir.path().join("sender.cfg"));
        let started = Instant::now();
        let out = if limit_memory {
            let mut c = std::process::Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -v {VMEM_KB}; exec \"$0\" \"$@\""))
                .arg(send::SSMSEND)
                .arg("-c")
                .arg(&path);
            c.output().unwrap()
        } else {
            send::command(&path).output().unwrap()
        };
        let took = started.elapsed();
        let log = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("took {took:?}:\n{log}");
        assert!(out.status.code().is_some(), "killed: {:?}", out.status);
        (out.status.code().unwrap_or(-1), log, took)
    }

    /// The checks of every case.
    fn assert_held(&self, ams: &Server, code: i32, log: &str, took: Duration, cause: &str) {
        assert_eq!(code, 1, "{log}");
        assert!(log.contains(cause), "no {cause:?} in:\n{log}");
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains(TOKEN), "the token is printed:\n{log}");
        for line in log.lines() {
            assert!(line.len() < 2_000, "a line of {} bytes", line.len());
            assert!(
                !line.chars().any(|c| c.is_control() && c != '\t'),
                "{line:?}"
            );
        }
        assert_eq!(self.elsewhere.connections(), 0, "something went elsewhere");
        let mut remaining = send::remaining(&self.queue, Layout::Dirq);
        remaining.sort();
        let mut names = self.names.clone();
        names.sort();
        assert_eq!(remaining, names, "every message still queued");
        let sent = ams.seen.lock().unwrap().bytes.clone();
        assert!(
            memchr::memmem::find(&sent, OUTSIDE.as_bytes()).is_none(),
            "a file outside the spool was sent"
        );
        assert!(took < BOUND, "took {took:?}");
    }
}

fn token_reply() -> Answer {
    Answer::Json(200, format!(r#"{{"token": "{TOKEN}"}}"#))
}

fn is_authx509(path: &str) -> bool {
    path.ends_with(":authx509")
}

#[test]
fn an_authx509_redirect_elsewhere_is_refused_so_the_certificate_stays() {
    let s = Setup::new();
    let to = s.elsewhere_url();
    let ams = s.ams(move |_, _| Answer::Redirect(302, to.clone()));
    let (code, log, took) = s.run(s.cfg(&ams), false);
    s.assert_held(&ams, code, &log, took, "not followed");
    assert!(
        log.contains(&format!("127.0.0.1:{}", s.elsewhere.port)),
        "{log}"
    );
    assert_eq!(s.elsewhere.seen.lock().unwrap().client_certificates, 0);
}

#[test]
fn a_publish_redirect_elsewhere_is_refused_so_the_token_stays() {
    let s = Setup::new();
    let to = s.elsewhere_url();
    let ams = s.ams(move |_, path| {
        if is_authx509(path) {
            token_reply()
        } else {
            Answer::Redirect(307, to.clone())
        }
    });
    let (code, log, took) = s.run(s.cfg(&ams), false);
    s.assert_held(&ams, code, &log, took, "not followed");
}

#[test]
fn a_publish_redirect_elsewhere_with_a_configured_token_is_refused() {
    let s = Setup::new();
    let to = s.elsewhere_url();
    let ams = s.ams(move |_, _| Answer::Redirect(308, to.clone()));
    let cfg = s.cfg(&ams).set("messaging", "token", TOKEN);
    let (code, log, took) = s.run(cfg, false);
    s.assert_held(&ams, code, &log, took, "not followed");
}

#[test]
fn an_endless_authx509_body_is_given_up() {
    let s = Setup::new();
    let ams = s.ams(|_, _| Answer::Endless);
    let (code, log, took) = s.run(s.cfg(&ams), true);
    s.assert_held(&ams, code, &log, took, "byte limit");
}

#[test]
fn an_endless_publish_reply_is_given_up() {
    let s = Setup::new();
    let ams = s.ams(|_, path| {
        if is_authx509(path) {
            token_reply()
        } else {
            Answer::Endless
        }
    });
    let (code, log, took) = s.run(s.cfg(&ams), true);
    s.assert_held(&ams, code, &log, took, "byte limit");
}

#[test]
fn a_garbage_401_echoing_the_token_is_excerpted_without_it() {
    let s = Setup::new();
    let ams = s.ams(|_, path| {
        if is_authx509(path) {
            token_reply()
        } else {
            Answer::Garbage401(512 << 10)
        }
    });
    let (code, log, took) = s.run(s.cfg(&ams), true);
    s.assert_held(&ams, code, &log, took, "access refused");
    assert!(log.contains("bytes in all"), "{log}");
}

/// Same-origin redirects stay where the token belongs: followed, and the
/// messages are published.
#[test]
fn a_same_origin_publish_redirect_is_followed() {
    let s = Setup::new();
    let port = Arc::new(Mutex::new(0u16));
    let p = port.clone();
    let ams = s.ams(move |_, path| {
        if is_authx509(path) {
            token_reply()
        } else if !path.contains("moved") {
            Answer::Redirect(
                307,
                format!("https://127.0.0.1:{}{path}?moved=1", *p.lock().unwrap()),
            )
        } else {
            Answer::Json(200, r#"{"messageIds": ["42"]}"#.into())
        }
    });
    *port.lock().unwrap() = ams.port;
    // The double answers one id: one message per request.
    let cfg = s.cfg(&ams).set("sender", "ams_max_messages_per_request", 1);
    let (code, log, _) = s.run(cfg, false);
    assert_eq!(code, 0, "{log}");
    assert!(send::remaining(&s.queue, Layout::Dirq).is_empty(), "{log}");
    assert_eq!(s.elsewhere.connections(), 0);
    assert!(!log.contains(TOKEN), "{log}");
}
