//! The real server on port 0, for the tests of the REST client and the
//! connection thread: on its own thread with its own runtime, its data in a
//! temporary directory, stopped and removed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chat_protocol::rest::Credentials;

use crate::api::Api;

const WAIT: Duration = Duration::from_secs(20);

pub(crate) struct TestServer {
    address: SocketAddr,
    directory: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<mpsc::Receiver<()>>,
}

impl TestServer {
    pub(crate) fn start() -> TestServer {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default();
        let directory =
            std::env::temp_dir().join(format!("chat-tui-unit-{}-{nanos}", std::process::id()));
        let mut settings = chat_server::Settings::defaults();
        settings.bind = "127.0.0.1:0".to_owned();
        settings.data_dir = directory.clone();
        settings.database_url = None;
        settings.bcrypt_cost = 10;
        settings.workers = Some(1);
        settings.shutdown_grace_secs = 1;
        let (ready, address) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (finished, stopped_thread) = mpsc::channel::<()>();
        thread::spawn(move || {
            let _finished = finished;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let app = chat_server::build(&settings)
                    .await
                    .expect("the server starts");
                let _ = ready.send(app.address());
                let _ = app
                    .run_until_stopped(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        let address = address.recv_timeout(WAIT).expect("the server started");
        TestServer {
            address,
            directory,
            stop: Some(stop),
            stopped: Some(stopped_thread),
        }
    }

    /// A client logged in as a new user `name`.
    pub(crate) fn signed_in(&self, name: &str) -> Api {
        let mut api = Api::new(&format!("http://{}", self.address));
        let credentials = Credentials {
            username: name.to_owned(),
            password: "correct horse battery".to_owned(),
        };
        api.register(&credentials).expect("register");
        api.login(&credentials).expect("login");
        api
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.recv_timeout(WAIT);
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
