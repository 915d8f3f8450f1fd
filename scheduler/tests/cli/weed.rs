//! A SeaweedFS server of a test's own, for the tests that kill and restart
//! their S3 server (the shared one from scripts/test.sh stays up).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub fn venv_bin(name: &str) -> PathBuf {
    let python = std::env::var("CHAINBATCH_PYTHON")
        .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it");
    Path::new(&python).with_file_name(name)
}

/// A port free on 127.0.0.1 whose gRPC twin (port + 10000) is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55_000
            && !taken.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
}

/// A SeaweedFS server of a test's own (S3 API on `endpoint()`, bucket
/// `restart`), which the test may kill and start again on the same data.
pub struct Weed {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    ports: [u16; 4],
    child: Option<Child>,
}

impl Weed {
    /// Starts a server on free ports, with the credentials scripts/test.sh
    /// exported.
    pub fn start_new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let mut ports = [0u16; 4];
        for i in 0..4 {
            ports[i] = free_port_pair(&ports[..i]);
        }
        let key = std::env::var("AWS_ACCESS_KEY_ID").expect("scripts/test.sh sets S3 credentials");
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
        std::fs::write(
            tmp.path().join("s3.json"),
            format!(
                r#"{{"identities": [{{"name": "t", "credentials": [{{"accessKey": "{key}", "secretKey": "{secret}"}}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let mut weed = Weed {
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
            ports,
            child: None,
        };
        weed.start();
        weed
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// Starts the server (again) and waits until a signed S3 call works.
    pub fn start(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        std::fs::create_dir_all(self.dir.join("data")).unwrap();
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = Command::new(venv_bin("weed"))
            .args([
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-volume.max=0",
            ])
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .args(["-s3", &format!("-s3.port={s3}")])
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when a signed S3 call succeeds, not when the port opens.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let probe = Command::new(venv_bin("python"))
                .args([
                    "-c",
                    "import boto3, os, sys\n\
                     s3 = boto3.client('s3', endpoint_url=sys.argv[1])\n\
                     names = [b['Name'] for b in s3.list_buckets()['Buckets']]\n\
                     'restart' in names or s3.create_bucket(Bucket='restart')\n\
                     s3.put_object(Bucket='restart', Key='_ready', Body=b'ok')",
                    &self.endpoint(),
                ])
                .output()
                .unwrap();
            if probe.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up: {}\n{}",
                String::from_utf8_lossy(&probe.stderr),
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Downloads `prefix` of the private server into `to` (boto3).
pub fn download(endpoint: &str, prefix: &str, to: &Path) {
    let ok = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import boto3, os, sys\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1])\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket='restart', Prefix=sys.argv[2]):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       path = os.path.join(sys.argv[3], o['Key'][len(sys.argv[2]):].lstrip('/'))\n\
             \x20       os.makedirs(os.path.dirname(path), exist_ok=True)\n\
             \x20       s3.download_file('restart', o['Key'], path)",
            endpoint,
            prefix,
        ])
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "download {prefix}");
}
