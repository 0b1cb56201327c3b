"""Cost benchmark: prompt tokens per message with and without quoted history, in the same run.

    python bench/cost.py                 # 3,000 messages
    python bench/cost.py --count 500     # quicker

On the thread corpus of the tests (tests/support/thread_corpus.py: replies quoting two to five
earlier messages, one in ten a forward, five languages, one in six HTML), every message is parsed
and rendered by the default template twice: as today (`prompt.strip_quoted = false`) and with the
quoted history set apart (the default). Printed: the median and p95 prompt tokens of each (counted
by triage.tokens: o200k_base where `bpe-openai` is installed, else characters / 4), their ratios
to today's, the median ratio by how many messages a reply quotes, and the time stripping adds to
parsing a message (median of five rounds, each parsing every message both ways, alternately).

Outcome checks (exit 1 if one fails): the median prompt at most half of today's, the p95 smaller
than today's, the new text of every message in its prompt's body, the quoted history absent (outside
the bounded excerpt) from at least nine prompts in ten, and every forwarded message kept whole.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from tests.support.thread_corpus import ThreadMessage, thread_corpus
from triage.message import Email, parse_email
from triage.prompt import PromptRenderer
from triage.tokens import estimate_tokens, estimator

MAX_BODY_CHARS = 4000  # prompt.max_body_chars's default
ROUNDS = 5


def _parse(message: ThreadMessage, strip: bool) -> Email:
    email = parse_email(message.raw, MAX_BODY_CHARS, strip_quoted=strip)
    assert isinstance(email, Email)
    return email


def _words(text: str) -> str:
    return " ".join(text.split())


def _parse_time_us(corpus: list[ThreadMessage]) -> tuple[float, float]:
    """Median over rounds of the time to parse a message, without and with stripping (µs)."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(ROUNDS):
        for strip in (False, True) if round_ % 2 == 0 else (True, False):
            started = time.perf_counter()
            for message in corpus:
                _parse(message, strip)
            times[strip].append((time.perf_counter() - started) / len(corpus) * 1e6)
    return statistics.median(times[False]), statistics.median(times[True])


def _p95(values: list[int]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    corpus = thread_corpus(args.count)
    renderer = PromptRenderer()
    prompts = {
        strip: [
            renderer.render(_parse(m, strip), account="support@example.com", mailbox="INBOX", threads=[])
            for m in corpus
        ]
        for strip in (False, True)
    }
    tokens = {strip: [estimate_tokens(p) for p in prompts[strip]] for strip in prompts}
    today, stripped = tokens[False], tokens[True]
    plain_us, strip_us = _parse_time_us(corpus)

    print(f"{len(corpus)} messages ({sum(m.is_forward for m in corpus)} forwards), tokens by {estimator()}")
    print(f"{'':26}{'median':>8}{'p95':>8}")
    print(f"{'today (strip_quoted off)':26}{statistics.median(today):8.0f}{_p95(today):8.0f}")
    print(f"{'new text only (default)':26}{statistics.median(stripped):8.0f}{_p95(stripped):8.0f}")
    median_ratio = statistics.median(stripped) / statistics.median(today)
    p95_ratio = _p95(stripped) / _p95(today)
    print(f"{'ratio to today':26}{median_ratio:8.2f}{p95_ratio:8.2f}")
    for quoted in range(2, 6):
        index = [i for i, m in enumerate(corpus) if m.quoted_messages == quoted and not m.is_forward]
        ratio = statistics.median(stripped[i] for i in index) / statistics.median(today[i] for i in index)
        print(f"  replies quoting {quoted}: median ratio {ratio:.2f} ({len(index)} messages)")
    print(
        f"parsing: {plain_us:.0f} µs a message without stripping, {strip_us:.0f} µs with: "
        f"+{strip_us - plain_us:.0f} µs ({strip_us / plain_us:.2f}x)"
    )

    kept = absent = replies = forwards_kept = 0
    for message, prompt in zip(corpus, prompts[True], strict=True):
        body = _words(prompt[prompt.index("<email-body>") : prompt.index("</email-body>")])
        kept += all(_words(s) in body for s in (*message.new_sentences, *message.forwarded_sentences))
        if message.is_forward:
            forwards_kept += all(_words(s) in body for s in message.forwarded_sentences)
            continue
        replies += 1
        outside = prompt
        if "<email-quoted>" in prompt:  # the bounded excerpt is allowed
            outside = prompt[: prompt.index("<email-quoted>")] + prompt[prompt.index("</email-quoted>") :]
        absent += not any(_words(s) in _words(outside) for s in message.earlier_sentences)
    forwards = len(corpus) - replies
    print(f"new text in the prompt's body: {kept}/{len(corpus)}; forwards kept: {forwards_kept}/{forwards}")
    print(f"quoted history absent (outside the excerpt): {absent}/{replies} ({absent / replies:.1%})")

    checks = {
        "median prompt at most half of today's": median_ratio <= 0.5,
        "p95 prompt smaller than today's": p95_ratio < 1,
        "every new text in its prompt": kept == len(corpus),
        "history absent from nine prompts in ten": absent >= 0.9 * replies,
        "every forward kept": forwards_kept == forwards,
    }
    failed = [name for name, ok in checks.items() if not ok]
    print("outcome checks: " + ("all passed" if not failed else "FAILED: " + "; ".join(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
