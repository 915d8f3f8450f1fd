//! Groups input files into tasks by bytes, keeping each partition's files
//! together whenever a partition fits in one task.

use crate::plan::listing::ListedFile;

/// Files of one task, and whether a partition had to be split across tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFiles {
    pub files: Vec<ListedFile>,
    pub bytes: u64,
}

/// Packs whole partition groups into tasks of up to `target_bytes`; a group
/// larger than that is split by files (and reported in the second value),
/// unless `never_split`.
pub fn group_by_bytes(
    files: &[ListedFile],
    target_bytes: u64,
    never_split: bool,
) -> (Vec<TaskFiles>, Vec<String>) {
    let mut groups: Vec<(String, Vec<ListedFile>, u64)> = vec![];
    for f in files {
        match groups.last_mut() {
            Some((k, v, b)) if *k == f.partition_key() => {
                v.push(f.clone());
                *b += f.size;
            }
            _ => groups.push((f.partition_key(), vec![f.clone()], f.size)),
        }
    }
    let mut tasks: Vec<TaskFiles> = vec![];
    let mut split = vec![];
    let mut cur = TaskFiles {
        files: vec![],
        bytes: 0,
    };
    for (key, gfiles, gbytes) in groups {
        if gbytes > target_bytes && !never_split {
            // Too big for one task: its own tasks, split by files.
            if !cur.files.is_empty() {
                tasks.push(std::mem::replace(
                    &mut cur,
                    TaskFiles {
                        files: vec![],
                        bytes: 0,
                    },
                ));
            }
            split.push(key);
            let mut part = TaskFiles {
                files: vec![],
                bytes: 0,
            };
            for f in gfiles {
                if part.bytes + f.size > target_bytes && !part.files.is_empty() {
                    tasks.push(std::mem::replace(
                        &mut part,
                        TaskFiles {
                            files: vec![],
                            bytes: 0,
                        },
                    ));
                }
                part.bytes += f.size;
                part.files.push(f);
            }
            tasks.push(part);
            continue;
        }
        if cur.bytes + gbytes > target_bytes && !cur.files.is_empty() {
            tasks.push(std::mem::replace(
                &mut cur,
                TaskFiles {
                    files: vec![],
                    bytes: 0,
                },
            ));
        }
        cur.bytes += gbytes;
        cur.files.extend(gfiles);
    }
    if !cur.files.is_empty() {
        tasks.push(cur);
    }
    // A group that spans a task boundary only because it was split is in `split`.
    (tasks, split)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(date: &str, n: u32, size: u64) -> ListedFile {
        ListedFile {
            uri: format!("file:///d/date={date}/{n}.parquet"),
            size,
            partition_values: vec![date.into()],
            modified: 0,
        }
    }

    #[test]
    fn keeps_partitions_whole_and_splits_only_giants() {
        let files = vec![
            f("a", 0, 40),
            f("a", 1, 40),
            f("b", 0, 50),
            f("c", 0, 30),
            f("d", 0, 100),
            f("d", 1, 100),
        ];
        let (tasks, split) = group_by_bytes(&files, 100, false);
        let keys: Vec<Vec<String>> = tasks
            .iter()
            .map(|t| t.files.iter().map(|f| f.partition_key()).collect())
            .collect();
        assert_eq!(
            keys,
            vec![vec!["a", "a"], vec!["b", "c"], vec!["d"], vec!["d"]]
        );
        assert_eq!(split, vec!["d".to_string()]);
        let (tasks, split) = group_by_bytes(&files, 100, true);
        assert_eq!(tasks.last().unwrap().files.len(), 2);
        assert!(split.is_empty());
    }

    #[test]
    fn small_files_are_packed_by_bytes() {
        // The dataset's current day: one file per block, ~7,200 of ~40 KB.
        let files: Vec<ListedFile> = (0..7200).map(|n| f("a", n, 40_000)).collect();
        let (tasks, split) = group_by_bytes(&files, 256 << 20, false);
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0].files.len(), (256 << 20) / 40_000);
        assert_eq!(split, vec!["a".to_string()]);
        let (tasks, split) = group_by_bytes(&files, 512 << 20, false);
        assert_eq!(tasks.len(), 1);
        assert!(split.is_empty());
    }
}
