"""The decision log as a tool: the queries behind `triage log`, `show`, `export`, `stats`, `correct`,
`review` and `replay`.

    labels.py       the names of decisions and statuses (light: the command line's choices)
    query.py        which decisions a command looks at (Filters), and reading them: entries, one
                    decision explained, a reference resolved
    stats.py        counts, rates and latency percentiles, from the daily rollups or the decisions
    corrections.py  human corrections beside the decisions, and the review queue
    replay.py       stored messages run again with another template or assistant, and compared

Pure data: each function takes a Store and returns values or streams them; the CLI prints. Long
results stream (`yield_per`), so a log of a million rows is never held in memory. Corrections sit
beside the decisions they correct and never change them; the latest correction of a decision counts.
Forgetting old bodies and prompts is the store's own (triage.store.retention).
"""
