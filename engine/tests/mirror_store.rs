//! The mirror's metadata store on a real `O_DIRECT` file through io_uring: format and load back,
//! superblock updates alternate slots and the newest valid one wins (a torn newest slot falls
//! back to the one before), activity-log transactions with their bitmap pages load back, and a
//! store for another volume, node or size is refused.

use ringsan_engine::disk::{create_sparse, FileDisk};
use ringsan_engine::mirror::activity_log::Transaction;
use ringsan_engine::mirror::bitmap::{Bitmap, PAGE_BYTES};
use ringsan_engine::mirror::gi::GenIds;
use ringsan_engine::mirror::meta::{DiskState, MetaError, Superblock};
use ringsan_engine::mirror::replica::MetaWrite;
use ringsan_engine::mirror::store::{MetaStore, StoreError};
use ringsan_engine::{Reactor, ReactorConfig};

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("{name}-{}", std::process::id()))
}

fn layout() -> Superblock {
    Superblock {
        seq: 0,
        volume: [0x42; 16],
        node_id: 1,
        volume_bytes: 300 << 20,
        granule_shift: 12,
        al_extent_shift: 22,
        al_slots: 8,
        al_extents: 16,
        gen: GenIds::fresh(77),
        disk: DiskState::UpToDate,
        primary: false,
        unclean: false,
        resync_cursor: 0,
    }
}

fn reactor() -> Reactor {
    Reactor::new(&ReactorConfig::default()).unwrap()
}

#[test]
fn a_store_formats_loads_and_keeps_the_newest_valid_state() {
    let path = temp_path("mirror-store");
    let sb = layout();
    create_sparse(&path, sb.store_bytes()).unwrap();
    let disk = FileDisk::open(&path).unwrap();
    let r = reactor();
    let p = path.clone();
    r.block_on(async move {
        let store = MetaStore::new(disk).unwrap();
        store.format(&sb).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(
            loaded.sb,
            Superblock {
                seq: 1,
                ..sb.clone()
            }
        );
        assert!(loaded.al_extents.is_empty());
        assert_eq!(loaded.al_next_seq, 0);
        assert_eq!(loaded.bitmap.count(), 0);
        assert_eq!(loaded.bitmap.pages(), 3);

        // Two superblock updates: slots alternate, the newest wins.
        let mut s2 = Superblock {
            seq: 2,
            primary: true,
            ..sb.clone()
        };
        store
            .write(&MetaWrite::Superblock(s2.clone()), &sb)
            .await
            .unwrap();
        s2.gen.new_generation(99);
        let s3 = Superblock {
            seq: 3,
            ..s2.clone()
        };
        store
            .write(&MetaWrite::Superblock(s3.clone()), &sb)
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().sb, s3);

        // An activity-log transaction with a bitmap page: both load back.
        let mut bits = Bitmap::new(sb.volume_bytes, 4096);
        bits.mark(200 << 20, 3 * 4096);
        let page = bits.page_of(200 << 20);
        let mut bytes = Box::new([0u8; PAGE_BYTES]);
        bits.page_bytes(page, &mut bytes);
        let tx = Transaction {
            seq: 0,
            extents: vec![50, 51, 7],
            evicted: vec![],
        };
        let write = MetaWrite::Al {
            flush_data_first: false,
            pages: vec![(page, bytes)],
            tx: tx.clone(),
        };
        store.write(&write, &sb).await.unwrap();
        let tx2 = Transaction {
            seq: 1,
            extents: vec![7, 9],
            evicted: vec![50, 51],
        };
        let write2 = MetaWrite::Al {
            flush_data_first: false,
            pages: vec![],
            tx: tx2,
        };
        store.write(&write2, &sb).await.unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.al_extents, vec![7, 9]);
        assert_eq!(loaded.al_next_seq, 2);
        assert_eq!(loaded.bitmap.count(), 3);
        assert!(loaded.bitmap.any(200 << 20, 1));
        p
    })
    .unwrap();

    // Tear the newest superblock (slot 1, seq 3) and the newest AL slot (slot 1, seq 1) as a
    // power loss in the middle of their writes would: the ones before count.
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff; 512], 4096 + 1024).unwrap();
    f.write_all_at(&[0xff; 512], 8192 + 4096 + 512).unwrap();
    drop(f);
    let disk = FileDisk::open(&path).unwrap();
    let r = reactor();
    r.block_on(async move {
        let store = MetaStore::new(disk).unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded.sb.seq, 2, "the torn seq 3 lost to seq 2");
        assert!(loaded.sb.primary);
        assert_eq!(loaded.al_extents, vec![50, 51, 7]);
        assert_eq!(loaded.al_next_seq, 1);
        // Another volume, node or size: refused by name.
        assert!(matches!(
            loaded.sb.check(&[0x43; 16], 1, 300 << 20),
            Err(MetaError::Mismatch {
                what: "another volume",
                ..
            })
        ));
    })
    .unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn an_empty_or_short_file_is_not_a_store() {
    let path = temp_path("mirror-store-empty");
    create_sparse(&path, 16 * 1024).unwrap();
    let disk = FileDisk::open(&path).unwrap();
    let r = reactor();
    r.block_on(async move {
        let store = MetaStore::new(disk).unwrap();
        assert!(matches!(
            store.load().await,
            Err(StoreError::Meta(MetaError::NoSuperblock))
        ));
        let sb = layout();
        assert!(matches!(
            store.format(&sb).await,
            Err(StoreError::TooSmall { .. })
        ));
    })
    .unwrap();
    let _ = std::fs::remove_file(&path);
}
