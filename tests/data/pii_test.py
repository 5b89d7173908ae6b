"""Personal data: planted findings counted exactly, figures and dates left
alone, the Luhn rule, redaction and scrubbing."""

import random

import pytest

from lm.data import pii

EMAILS = ['ada.lovelace@example.org', 'j_smith+news@mail.example.co.uk']
PHONES = ['+1 (555) 123-4567', '555.867.5309', '+44 20 7946 0958',
          '(020) 7946-0958']
IPS = ['192.168.0.1', '8.8.4.4', '255.255.255.0']
CARDS = ['4111 1111 1111 1111', '5500-0000-0000-0004', '378282246310005']
# Look like personal data to a careless pattern; are not.
DECOYS = ['149 608 708 km', 'in 1996 – 97', '2010-11-12', '12.11.2010',
          'ISBN 978-0-306-40615-7', '4111 1111 1111 1112', 'version 1.2.3',
          '10.0.0.256', '3 @,@ 000 people', 'user at example dot com',
          '[2009-2017]', '1914 - 1918']


def _planted(seed=0, docs=200):
  """Documents of filler words with the findings planted at random, and
  how many of each kind went in."""
  rng = random.Random(seed)
  words = 'the a river town was built in by on of and its'.split()
  counts = {k: 0 for k in pii.KINDS}
  texts = []
  for _ in range(docs):
    parts = [rng.choice(words) for _ in range(rng.randint(3, 30))]
    for kind, pool in (('email', EMAILS), ('phone', PHONES), ('ip', IPS),
                       ('card', CARDS), (None, DECOYS)):
      if rng.random() < 0.2:
        # Between words: two numbers side by side would read as one.
        parts.insert(rng.randint(0, len(parts)), f'at {rng.choice(pool)} ;')
        if kind:
          counts[kind] += 1
    texts.append(' '.join(parts))
  return texts, counts


def test_planted_counts_are_exact():
  texts, counts = _planted()
  assert sum(counts.values()) > 50
  found = pii.survey(texts)
  assert found['counts'] == counts
  # Brute force: a document holds a finding iff a planted value is in it.
  planted = EMAILS + PHONES + IPS + CARDS
  assert found['documents'] == sum(any(v in t for v in planted)
                                   for t in texts)


@pytest.mark.parametrize('text', DECOYS)
def test_decoys_are_not_personal_data(text):
  assert pii.find(f'see {text} here') == []


@pytest.mark.parametrize('kind,value', [('email', v) for v in EMAILS]
                         + [('phone', v) for v in PHONES]
                         + [('ip', v) for v in IPS]
                         + [('card', v) for v in CARDS])
def test_each_kind_found_whole(kind, value):
  text = f'contact: {value}, thanks'
  (start, end, found), = pii.find(text)
  assert (text[start:end], found) == (value, kind)


def test_luhn():
  assert pii.luhn('4111111111111111') and pii.luhn('378282246310005')
  assert not pii.luhn('4111111111111112')
  # One digit changed always breaks the check.
  digits = '79927398713'
  assert pii.luhn(digits)
  for i in range(len(digits)):
    for d in '0123456789':
      if d != digits[i]:
        assert not pii.luhn(digits[:i] + d + digits[i + 1:])


def test_redaction_hides_the_identifying_part():
  assert pii.redact('email', 'ada.lovelace@example.org') == 'a***@e***.org'
  assert pii.redact('card', '4111 1111 1111 1111') == '#### #### #### ##11'
  assert pii.redact('phone', '+1 (555) 123-4567') == '+# (###) ###-##67'
  texts, _ = _planted(seed=1)
  for examples in pii.survey(texts, examples=10)['examples'].values():
    for shown in examples:
      assert not any(v in shown for v in EMAILS + PHONES + IPS + CARDS)


def test_scrub_replaces_each_finding_with_its_placeholder():
  text = f'mail {EMAILS[0]} or call {PHONES[0]} from {IPS[0]}; {DECOYS[0]}'
  scrubbed, counts = pii.scrub(text)
  assert scrubbed == f'mail <EMAIL> or call <PHONE> from <IP>; {DECOYS[0]}'
  assert counts == {'email': 1, 'phone': 1, 'ip': 1}
  assert pii.scrub(scrubbed) == (scrubbed, {})
