//! The memory a column writer's compression codec holds, measured from the
//! codec itself.
//!
//! Parquet's zstd codec keeps, for every column writer of a row group in
//! progress, a compression context whose tables are sized to the pages it
//! compressed (tens of KiB for a page of a few KiB, over 1 MiB for a 1 MiB
//! page at level 3) and a decompression context (96 KiB) that writing
//! never uses. The Parquet writer's memory estimate counts neither; with
//! many small files open they were most of a task's memory. zstd reports
//! what its contexts hold, so the sizes are measured once per level, for
//! pages of each power of two, instead of modelled.

use parquet::basic::Compression;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Pages measured: powers of two from 1 KiB to 2 MiB (zstd's window, and so
/// its tables, stop growing there at the levels layouts use).
const MIN_PAGE_LOG: u32 = 10;
const MAX_PAGE_LOG: u32 = 21;

/// A column writer's codec state for codecs other than zstd (their
/// buffers; snappy and lz4 hold no context between pages).
const OTHER_CODEC_COLUMN_BYTES: usize = 16 * 1024;

/// What a codec that zstd cannot measure (an unknown level) is charged per
/// column: the contexts of level 3 on a 1 MiB page.
const UNMEASURED_ZSTD_COLUMN_BYTES: usize = 1400 * 1024;

/// The memory of one codec's column writers, looked up once per writer
/// context: a file's columns are weighed after every key written.
#[derive(Debug, Clone, Copy)]
pub struct CodecMemory {
    codec: Compression,
    /// zstd's measured contexts at the codec's level.
    zstd: ContextTable,
}

impl CodecMemory {
    /// The memory of `codec`'s column writers (zstd's contexts measured on first use).
    pub fn new(codec: Compression) -> Self {
        let zstd = match codec {
            Compression::ZSTD(level) => zstd_table(level.compression_level()),
            _ => None,
        };
        Self { codec, zstd }
    }

    /// Bytes one column writer's codec holds once it has compressed pages
    /// of up to `page_bytes`.
    pub fn column_bytes(&self, page_bytes: usize) -> usize {
        match self.codec {
            Compression::ZSTD(_) => self.zstd.map_or(UNMEASURED_ZSTD_COLUMN_BYTES, |t| {
                t[(page_log(page_bytes) - MIN_PAGE_LOG) as usize]
            }),
            Compression::UNCOMPRESSED => 0,
            _ => OTHER_CODEC_COLUMN_BYTES,
        }
    }
}

/// The power of two at or above `page_bytes`, within the sizes measured.
fn page_log(page_bytes: usize) -> u32 {
    page_bytes
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .clamp(MIN_PAGE_LOG, MAX_PAGE_LOG)
}

/// Per page size (powers of two from `MIN_PAGE_LOG`), the bytes of one
/// column's zstd contexts; `None` when zstd refused the level.
type ContextTable = Option<&'static [usize]>;

/// The [`ContextTable`] of `level`: measured on first use, then kept.
fn zstd_table(level: i32) -> ContextTable {
    static TABLES: OnceLock<Mutex<HashMap<i32, ContextTable>>> = OnceLock::new();
    let mut tables = TABLES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    *tables
        .entry(level)
        .or_insert_with(|| measure_zstd(level).map(|t| &*Box::leak(t.into_boxed_slice())))
}

/// Compresses a page of each size with a fresh context and reads what the
/// context then holds (its tables depend on the level and the page size,
/// not on the bytes), plus the decompression context the codec creates.
fn measure_zstd(level: i32) -> Option<Vec<usize>> {
    let dctx = zstd::zstd_safe::DCtx::create().sizeof();
    let page = vec![0u8; 1 << MAX_PAGE_LOG];
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(page.len()));
    (MIN_PAGE_LOG..=MAX_PAGE_LOG)
        .map(|log| {
            let mut c = zstd::bulk::Compressor::new(level).ok()?;
            out.clear();
            c.compress_to_buffer(&page[..1 << log], &mut out).ok()?;
            Some(c.context_mut().sizeof() + dctx)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::ZstdLevel;

    #[test]
    fn zstd_contexts_grow_with_the_page_and_the_level() {
        let zstd = |level, page| {
            CodecMemory::new(Compression::ZSTD(ZstdLevel::try_new(level).unwrap()))
                .column_bytes(page)
        };
        // The decompression context alone is ~96 KiB.
        assert!(zstd(1, 1) > 90 * 1024, "{}", zstd(1, 1));
        // A small file's page (a few thousand values) and a full 1 MiB page.
        assert!(zstd(1, 16 << 10) > 250 * 1024, "{}", zstd(1, 16 << 10));
        assert!(zstd(1, 1 << 20) > 600 * 1024, "{}", zstd(1, 1 << 20));
        assert!(zstd(3, 1 << 20) > 1200 * 1024, "{}", zstd(3, 1 << 20));
        assert!(zstd(3, 1 << 20) >= zstd(3, 64 << 10));
        // Beyond the largest page measured, the largest size holds.
        assert_eq!(zstd(3, 64 << 20), zstd(3, 2 << 20));
        assert_eq!(
            CodecMemory::new(Compression::SNAPPY).column_bytes(1 << 20),
            16 * 1024
        );
        assert_eq!(
            CodecMemory::new(Compression::UNCOMPRESSED).column_bytes(1 << 20),
            0
        );
    }
}
