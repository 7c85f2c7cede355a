#![no_main]
//! The fetch ledger's reader (snapshot and journal). Two modes:
//! - raw (first byte even): arbitrary bytes as both files; no panic, and
//!   the torn tail it reports is within the journal;
//! - records (first byte odd): a snapshot and a journal written from
//!   records the input describes, the journal cut at an arbitrary point
//!   (a crash mid-append) and perhaps one byte of its last line changed.
//!   Properties: the whole records are all read back exactly, with no
//!   damage; a torn or garbled last record is never taken for a record
//!   (every entry read is one that was written, with its latest values).

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use yubin_fetch::ledger::{
    Entry, Kind, journal_header, journal_record, read_contents, snapshot_text,
};

fn raw(input: &[u8]) {
    let cut = usize::from(input.first().copied().unwrap_or(0)) * input.len() / 256;
    let (snapshot, journal) = input.split_at(cut);
    let contents = read_contents(Some(snapshot), Some(journal));
    if let Some(at) = contents.journal_torn_at {
        assert!(at <= journal.len() as u64);
    }
}

fn records(input: &[u8]) {
    let Some((&cut, rest)) = input.split_first() else {
        return;
    };
    let Some((&garble, rest)) = rest.split_first() else {
        return;
    };
    // Each record: 4 bytes, a key from the first, kind, size and time
    // from the rest (small alphabets, so keys repeat and sizes change).
    let written: Vec<(String, Entry)> = rest
        .chunks_exact(4)
        .map(|r| {
            let key = format!("k{}", r[0] % 8);
            let kind =
                [Kind::Whole, Kind::HeadersOnly, Kind::Kept, Kind::Skipped][usize::from(r[1]) % 4];
            let entry = Entry {
                first_fetched: u64::from(r[2]),
                kind,
                size: u64::from(r[3] % 4),
            };
            (key, entry)
        })
        .collect();
    let half = written.len() / 2;
    let snapshot_entries: HashMap<String, Entry> = written[..half].iter().cloned().collect();
    let snapshot = snapshot_text(7, &snapshot_entries);
    let mut journal = journal_header(7).into_bytes();
    let mut line_ends = Vec::new();
    for (key, entry) in &written[half..] {
        journal.extend_from_slice(journal_record(key, entry).as_bytes());
        line_ends.push(journal.len());
    }
    // The whole files read back exactly.
    let whole = read_contents(Some(snapshot.as_bytes()), Some(&journal));
    assert_eq!(whole.snapshot_damage, None);
    assert_eq!(whole.journal_damage, None);
    assert_eq!(whole.journal_torn_at, None);
    let mut expected = snapshot_entries.clone();
    for (key, entry) in &written[half..] {
        replay(&mut expected, key, *entry);
    }
    assert_eq!(whole.entries, expected);
    // A crash mid-append: the journal cut anywhere after its header, and
    // perhaps one byte of what follows the last whole record changed.
    let header = journal_header(7).len();
    let cut = header + usize::from(cut) * (journal.len() - header) / 255;
    let mut torn = journal[..cut].to_vec();
    let whole_records = line_ends.iter().filter(|&&end| end <= cut).count();
    let last_whole = if whole_records == 0 {
        header
    } else {
        line_ends[whole_records - 1]
    };
    let mut new_line = false;
    if garble != 0 && torn.len() > last_whole {
        let at = last_whole + usize::from(garble) % (torn.len() - last_whole);
        torn[at] ^= garble;
        new_line = torn[at] == b'\n';
    }
    let read = read_contents(Some(snapshot.as_bytes()), Some(&torn));
    if !new_line {
        // (A line end made up inside the tail makes a bad line before the
        // last: damage, rightly; its records still count.)
        assert_eq!(
            read.journal_damage, None,
            "a torn last record is not damage"
        );
    }
    let mut expected = snapshot_entries;
    for (key, entry) in &written[half..half + whole_records] {
        replay(&mut expected, key, *entry);
    }
    assert_eq!(read.entries, expected, "a torn record was read");
}

/// What replaying one journal record does (as the reader documents it).
fn replay(entries: &mut HashMap<String, Entry>, key: &str, record: Entry) {
    let entry = entries.entry(key.to_owned()).or_insert(record);
    if entry.size == record.size {
        entry.first_fetched = entry.first_fetched.min(record.first_fetched);
    } else {
        entry.first_fetched = record.first_fetched;
    }
    entry.kind = record.kind;
    entry.size = record.size;
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(input);
    } else {
        records(input);
    }
});
