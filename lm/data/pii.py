"""Personal data in text: e-mail addresses, phone numbers, IP addresses and
card-like numbers, found, counted, redacted for display, and scrubbed.

Found by patterns, as the data cleaners of Dolma and DataTrove do (a
pattern finds the forms people write; a name or a street address needs a
tagger model and is not attempted here):
  email  name@domain.tld
  card   13 to 19 digits, in groups split by spaces or dashes or none, that
         pass the Luhn check (random digit strings pass it one time in ten)
  ip     IPv4, four numbers 0-255 joined by dots
  phone  7 to 15 digits in two or more groups split by spaces, dots or
         dashes, optionally +country and (area code), with at least one dot,
         dash, + or parenthesis (numbers split by spaces alone are figures,
         "149 608 708 km"), not a date or a range of years; a card or an
         address found first is not a phone as well.
"""

from __future__ import annotations

import collections
import re

KINDS = ('email', 'card', 'ip', 'phone')
PLACEHOLDERS = {'email': '<EMAIL>', 'card': '<CARD>', 'ip': '<IP>',
                'phone': '<PHONE>'}

_OCTET = r'(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)'
_PATTERNS = {
    'email': re.compile(r'(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+'
                        r'(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b'),
    'card': re.compile(r'(?<![\d.-])\d(?:[ -]?\d){12,18}(?!\d|[.-]\d)'),
    'ip': re.compile(rf'(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\d|\.\d)'),
    'phone': re.compile(r'(?<![\w+.-])(?:\+\d{1,3}[ .-]?)?'
                        r'(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,3}'
                        r'(?!\w|[.-]\w)'),
}
# Dates (2010-11-12, 12.11.2010) and year ranges (2009-2017) have a phone's
# digits and separators.
_DATE = re.compile(r'\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}'
                   r'|(?:1[5-9]|20)\d\d ?[-–] ?(?:1[5-9]|20)\d\d')


def luhn(digits: str) -> bool:
  """The Luhn check that payment card numbers pass."""
  total = 0
  for i, ch in enumerate(reversed(digits)):
    d = int(ch)
    if i % 2:
      d = d * 2 - 9 if d > 4 else d * 2
    total += d
  return total % 10 == 0


def _valid(kind: str, text: str) -> bool:
  digits = re.sub(r'\D', '', text)
  if kind == 'card':
    return 13 <= len(digits) <= 19 and luhn(digits)
  if kind == 'phone':
    # Runs of numbers split by spaces alone are figures ("149 608 708 km").
    return (7 <= len(digits) <= 15 and bool(re.search(r'[-.()+]', text))
            and not _DATE.fullmatch(text))
  return True


def find(text: str) -> list[tuple[int, int, str]]:
  """(start, end, kind) of each piece of personal data, in text order; kinds
  are tried in KINDS order and a span never overlaps an earlier one."""
  taken: list[tuple[int, int, str]] = []
  for kind in KINDS:
    for m in _PATTERNS[kind].finditer(text):
      s, e = m.span()
      if _valid(kind, m.group()) and not any(
          s < te and ts < e for ts, te, _ in taken):
        taken.append((s, e, kind))
  return sorted(taken)


def redact(kind: str, value: str) -> str:
  """A shown example with the identifying part masked: an address's name
  and domain but their first letters, a number's digits but its last two."""
  if kind == 'email':
    name, domain = value.split('@', 1)
    host, tld = domain.rsplit('.', 1)
    return f'{name[0]}***@{host[0]}***.{tld}'
  n = sum(ch.isdigit() for ch in value)
  out, seen = [], 0
  for ch in value:
    if ch.isdigit():
      seen += 1
      out.append(ch if seen > n - 2 else '#')
    else:
      out.append(ch)
  return ''.join(out)


def scrub(text: str) -> tuple[str, collections.Counter]:
  """The text with each piece of personal data replaced by its kind's
  placeholder, and the count of each kind replaced."""
  counts = collections.Counter()
  out, at = [], 0
  for s, e, kind in find(text):
    out.append(text[at:s])
    out.append(PLACEHOLDERS[kind])
    counts[kind] += 1
    at = e
  out.append(text[at:])
  return ''.join(out), counts


def survey(texts, examples: int = 3) -> dict:
  """Counts by kind over `texts`, documents holding any, and up to
  `examples` redacted examples of each kind."""
  counts = {k: 0 for k in KINDS}
  shown = {k: [] for k in KINDS}
  documents = 0
  for text in texts:
    found = find(text)
    documents += bool(found)
    for s, e, kind in found:
      counts[kind] += 1
      if len(shown[kind]) < examples:
        shown[kind].append(redact(kind, text[s:e]))
  return {'counts': counts, 'documents': documents, 'examples': shown}
