//! The body store's seam: maildrops and the queue over PostgreSQL with
//! their bodies in a store beside the database, as an S3-compatible one
//! would be. The `bodies` rows (the ids that maildrop rows and queue
//! entries name) come from the database; the octets are kept in memory,
//! in chunks of another size than the database's, and every body is
//! written by the store, none with the row that names it.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;
use yubin_auth::UserEntry;
use yubin_pg::{BodyFuture, BodyStore, Chunk, Database, ReadAhead};
use yubin_queue::{Envelope, QueueStore};
use yubin_test_pg::TestPostgres;

use super::*;
use crate::backend::{MailStore, UserDirectory};

/// 64 KiB chunks, in memory.
struct Beside {
    db: Database,
    chunks: Mutex<HashMap<(i64, i32), Vec<u8>>>,
    reading_ahead: Arc<Semaphore>,
}

const BESIDE_CHUNK: usize = 64 * 1024;

impl Beside {
    fn chunks_held(&self) -> usize {
        crate::lock(&self.chunks).len()
    }
}

impl BodyStore for Beside {
    fn chunk_size(&self) -> usize {
        BESIDE_CHUNK
    }

    fn inline_limit(&self) -> usize {
        0
    }

    fn start_body(&self, size: u64) -> BodyFuture<'_, i64> {
        Box::pin(self.db.start_body(size))
    }

    fn write_chunk<'a>(&'a self, body: i64, seq: i32, data: &'a [u8]) -> BodyFuture<'a, ()> {
        assert!(
            data.len() <= BESIDE_CHUNK,
            "a chunk of {} octets",
            data.len()
        );
        crate::lock(&self.chunks).insert((body, seq), data.to_vec());
        Box::pin(async { Ok(()) })
    }

    fn first_chunks<'a>(&'a self, bodies: &'a [i64]) -> BodyFuture<'a, Vec<(i64, Vec<u8>)>> {
        let chunks = crate::lock(&self.chunks);
        let found = bodies
            .iter()
            .filter_map(|body| Some((*body, chunks.get(&(*body, 0))?.clone())))
            .collect();
        Box::pin(async { Ok(found) })
    }

    fn read_chunks(&self, body: i64, first: i32, count: i32) -> BodyFuture<'_, Vec<Chunk>> {
        let chunks = crate::lock(&self.chunks);
        let found = (first..first + count)
            .map_while(|seq| chunks.get(&(body, seq)).cloned().map(Chunk::owned))
            .collect();
        Box::pin(async { Ok(found) })
    }

    fn read_ahead(&self) -> Option<ReadAhead> {
        self.reading_ahead
            .clone()
            .try_acquire_owned()
            .ok()
            .map(ReadAhead::new)
    }
}

fn lines(len: u32) -> Vec<u8> {
    (0..len)
        .map(|i| {
            if i % 61 == 60 {
                b'\n'
            } else {
                b'a' + (i % 26) as u8
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maildrops_and_the_queue_keep_their_bodies_in_a_store_beside_the_database() {
    let pg = TestPostgres::start().expect("a cluster");
    let db = Database::connect(&pg.url(), 4).expect("a pool");
    db.migrate().await.expect("migrated");
    let entry = UserEntry::parse("alice:{PLAIN}pw").expect("an entry");
    assert!(db.add_user(&entry).await.expect("added"));
    let users = PgUsers::load(db.clone(), None).await.expect("loaded");
    let alice = users.snapshot().users.get("alice").cloned().expect("alice");
    let beside = Arc::new(Beside {
        db: db.clone(),
        chunks: Mutex::default(),
        reading_ahead: Arc::new(Semaphore::new(2)),
    });
    let store = Arc::new(
        PgMailStore::new(db.clone(), "a").with_bodies(beside.clone() as Arc<dyn BodyStore>),
    );

    // Small, empty, and large: past a chunk, not a whole number of them.
    let messages = vec![
        b"Subject: small\n\nhello\n".to_vec(),
        Vec::new(),
        lines(1_000_003),
    ];
    let (s, sent, u) = (store.clone(), messages.clone(), alice.clone());
    tokio::task::spawn_blocking(move || {
        for message in &sent {
            let wire = yubin_line::WireSize::of(message);
            let staged = s
                .stage(&u, None, message.len() as u64, wire, &mut |out| {
                    for piece in message.chunks(7000) {
                        out.write_all(piece)?;
                    }
                    Ok(())
                })
                .expect("staged");
            staged.commit().expect("committed");
        }
    })
    .await
    .expect("joined");
    let in_table: i64 = db
        .query_one("SELECT count(*) FROM body_chunks", &[])
        .await
        .expect("counted")
        .get(0);
    assert_eq!(in_table, 0, "no octet in the database's table");
    // One chunk for the small body, none for the empty one, 16 for 1 MB.
    assert_eq!(beside.chunks_held(), 1 + 16);

    let s = store.clone();
    let maildrop = tokio::task::spawn_blocking(move || s.open(&alice).map_err(|e| e.to_string()))
        .await
        .expect("joined")
        .expect("opened");
    assert_eq!(maildrop.len(), 3);
    let m = maildrop.clone();
    let read = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|i| {
                let mut body = Vec::new();
                m.open(i)
                    .expect("opened")
                    .read_to_end(&mut body)
                    .expect("read");
                body
            })
            .collect::<Vec<_>>()
    })
    .await
    .expect("joined");
    assert!(
        read == messages,
        "every body comes back from the store whole"
    );
    let mut stream = maildrop.stream(2).expect("the large body streams");
    let mut whole = Vec::new();
    while let Some(piece) = stream.next_piece().await.expect("a piece") {
        whole.extend_from_slice((*piece).as_ref());
    }
    assert!(whole == messages[2], "and streams whole");

    // The queue, through the same store.
    let queue = Arc::new(PgQueue::new(db.clone(), "a").with_bodies(beside.clone()));
    let message = lines(300_000);
    let (q, sent) = (queue.clone(), message.clone());
    let back = tokio::task::spawn_blocking(move || {
        let envelope = Envelope {
            id: "e1".into(),
            created: 1_795_727_974,
            from: "alice@example.org".into(),
            recipients: vec!["x@remote.example".into()],
            client: "192.0.2.7".into(),
            auth: String::new(),
            body: "8BITMIME".into(),
            smtputf8: false,
            size: None,
        };
        let staged = q
            .stage(&envelope, &mut |out| out.write_all(&sent))
            .expect("staged");
        staged.commit().expect("committed");
        let (_, mut body) = q.open("e1").expect("opened");
        let mut back = Vec::new();
        body.read_to_end(&mut back).expect("read");
        back
    })
    .await
    .expect("joined");
    assert!(
        back == message,
        "the queued message comes back from the store"
    );
    assert_eq!(beside.chunks_held(), 1 + 16 + 5);
}
