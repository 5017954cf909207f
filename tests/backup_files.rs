//! `zeod backup` on files Python ZODB wrote: a voted-but-unfinished tail is
//! never copied (and the source is never touched), the incremental after the
//! commit finishes picks it up, blobs come back byte for byte, and an
//! unchanged source makes no new backup.

#![allow(clippy::unwrap_used)] // tests may unwrap: a panic is a failed test

#[path = "common/fixtures.rs"]
mod common;

use std::path::Path;
use std::time::Duration;

use zeod::backup::{self, BackupArgs, BackupOutcome};
use zeod::ids::Tid;

fn args(repo: &Path, file: &Path) -> BackupArgs {
    BackupArgs {
        repository: repo.to_path_buf(),
        file: Some(file.to_path_buf()),
        ..BackupArgs::default()
    }
}

fn written(outcome: BackupOutcome) -> backup::Written {
    match outcome {
        BackupOutcome::Written(w) => w,
        BackupOutcome::Unchanged => panic!("expected a backup to be written"),
    }
}

/// Backup files are named to the second, like repozo's.
fn next_second() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn a_checkpoint_tail_is_left_out_until_its_commit_finishes() {
    let (tmp, data) = common::copy_fixture("f_crash_c");
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let before = std::fs::read(&data).unwrap();
    let tail_pos = 1367;
    assert_eq!(before[tail_pos + 16], b'c');

    let w = written(backup::backup(&args(&repo, &data)).unwrap());
    assert!(w.full);
    assert_eq!((w.start, w.end), (0, tail_pos as u64));
    assert!(
        w.tid < Tid::from_u64(0x03f5_8e00_1999_9999),
        "the tail's tid is not committed"
    );
    assert_eq!(std::fs::read(&w.path).unwrap(), &before[..tail_pos]);
    assert_eq!(
        std::fs::read(&data).unwrap(),
        before,
        "backup must not touch the source"
    );

    // tpc_finish flips the status byte: now the transaction is committed.
    let mut finished = before.clone();
    finished[tail_pos + 16] = b' ';
    std::fs::write(&data, &finished).unwrap();
    next_second();
    let w = written(backup::backup(&args(&repo, &data)).unwrap());
    assert!(!w.full);
    assert_eq!((w.start, w.end), (tail_pos as u64, finished.len() as u64));
    assert_eq!(w.tid, Tid::from_u64(0x03f5_8e00_1999_9999));

    let out = tmp.path().join("restored/Data.fs");
    let r = backup::recover(&BackupArgs {
        recover: true,
        output: Some(out.clone()),
        ..args(&repo, &data)
    })
    .unwrap();
    assert_eq!(r.files.len(), 2);
    assert_eq!(std::fs::read(&out).unwrap(), finished);
    assert!(tmp.path().join("restored/Data.fs.index").exists());

    // Nothing new: no third file.
    next_second();
    let quick = BackupArgs {
        quick: true,
        ..args(&repo, &data)
    };
    assert!(matches!(
        backup::backup(&quick).unwrap(),
        BackupOutcome::Unchanged
    ));
    assert!(matches!(
        backup::backup(&args(&repo, &data)).unwrap(),
        BackupOutcome::Unchanged
    ));
}

#[test]
fn a_partial_tail_is_left_out() {
    let (tmp, data) = common::copy_fixture("f_crash_partial");
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let w = written(backup::backup(&args(&repo, &data)).unwrap());
    assert_eq!(w.end, 1367);
}

#[test]
fn blobs_are_backed_up_and_restored_byte_for_byte() {
    let (tmp, data) = common::copy_fixture("e_blobs");
    let blobs = tmp.path().join("blobs");
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let a = BackupArgs {
        blob_dir: Some(blobs.clone()),
        gzip: true,
        ..args(&repo, &data)
    };
    let w = written(backup::backup(&a).unwrap());
    assert!(w.path.to_string_lossy().ends_with(".fsz"));
    assert_eq!(w.blobs.copied, 3);
    let v = backup::verify(&BackupArgs {
        verify: true,
        ..args(&repo, &data)
    })
    .unwrap();
    assert_eq!((v.files, v.blobs), (1, 3));

    let out = tmp.path().join("restored");
    backup::recover(&BackupArgs {
        recover: true,
        output: Some(out.join("Data.fs")),
        blob_dir: Some(out.join("blobs")),
        ..args(&repo, &data)
    })
    .unwrap();
    assert_eq!(
        std::fs::read(out.join("Data.fs")).unwrap(),
        std::fs::read(&data).unwrap()
    );
    let mut n = 0;
    for rel in walk(&blobs) {
        assert_eq!(
            std::fs::read(out.join("blobs").join(&rel)).unwrap(),
            std::fs::read(blobs.join(&rel)).unwrap(),
            "{rel}"
        );
        n += 1;
    }
    assert_eq!(n, 3);
    // Recovering blobs over a populated directory is refused.
    std::fs::remove_file(out.join("Data.fs")).unwrap();
    let again = backup::recover(&BackupArgs {
        recover: true,
        output: Some(out.join("Data.fs")),
        blob_dir: Some(out.join("blobs")),
        ..args(&repo, &data)
    });
    assert!(matches!(again, Err(backup::Error::BlobDirNotEmpty(_))));
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "blob") {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}
