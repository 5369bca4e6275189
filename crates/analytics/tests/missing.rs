//! Every starred image that has gone missing is noted in the report, not only the ones the
//! contact sheet shows; a missing image never stops the report.
#![allow(clippy::unwrap_used)]

use imagelab_analytics::{analyze, AnalyzeOptions};

#[test]
fn starred_images_that_are_gone_are_noted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("output")).unwrap();
    std::fs::write(dir.path().join("output/kept.png"), b"not really a png").unwrap();
    let log = dir.path().join("jobs.log");
    std::fs::write(
        &log,
        "{\"event\":\"favorite\",\"image\":\"gone.png\",\"at\":1}\n\
         {\"event\":\"favorite\",\"image\":\"kept.png\",\"at\":2}\n\
         {\"event\":\"favorite\",\"image\":\"unstarred.png\",\"at\":3}\n\
         {\"event\":\"unfavorite\",\"image\":\"unstarred.png\",\"at\":4}\n",
    )
    .unwrap();
    let mut opts = AnalyzeOptions::new(log);
    opts.output_dir = Some(dir.path().join("output"));
    let report = analyze(&opts).unwrap();
    assert_eq!(report.summary.missing_images, vec!["gone.png".to_string()]);
}
