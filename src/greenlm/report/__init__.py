"""Reports: summaries, CodeCarbon-compatible CSV, HTML reports and plots."""
