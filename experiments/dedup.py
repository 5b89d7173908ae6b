"""Study: what the training-split filters change. The WikiText-2 word-level
CPU recipe (`configs/wikitext2_word.py:cpu`, 20 minutes on 2 cores) trained
as published; with near-duplicate training lines dropped (`data.dedup=near`,
Jaccard >= 0.8 of 5-word shingles, lines of 4 words or more: 60 of 36,718);
and with training lines sharing a 13-gram with validation or test dropped
first (`data.decontaminate`: 50 lines), 3 seeds each. Columns: validation
and test perplexity (word level), the figures the filters could flatter or
spoil.

  python -m lm.study experiments/dedup.py
"""


def get_study():
  return {
      'base': 'configs/wikitext2_word.py:cpu',
      'grid': {
          'as_published': {},
          'dedup_near': {'data.dedup': 'near'},
          'dedup_near_decontaminated': {'data.dedup': 'near',
                                        'data.decontaminate': True},
      },
      'seeds': [0, 1, 2],
      'metrics': ['validation.perplexity', 'test.perplexity'],
      'out': 'experiments/dedup',
  }
