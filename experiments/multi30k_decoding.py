"""Study: BLEU of the Multi30k CPU recipe against beam size and length
penalty, with decoding speed.

Each seed trains `configs/multi30k.py:cpu` (English->German, about 50
minutes on 2 CPU cores); its final evaluation (beam 4, GNMT penalty 0.6) is
then run again under every decoding setting: greedy, and beams 2, 4 and 8
under GNMT length penalties alpha 0, 0.6 and 1.0 (greedy has no penalty to
vary). Beam 4 at 0.6, the recipe's own final evaluation (the first table),
is evaluated again with the others, so that every setting's tokens/s is
measured the same way (the final evaluation runs straight after training).
Columns: sacreBLEU and tokenized BLEU on the validation split and test2016,
and target tokens decoded per second on test2016.

  python -m lm.study experiments/multi30k_decoding.py
"""

_METRICS = ['validation.bleu', 'test.bleu', 'test.tokenized_bleu',
            'test.tokens_per_sec']


def get_study():
  settings = {'greedy': {'eval.beam_size': 1}}
  for beam in (2, 4, 8):
    for alpha in (0.0, 0.6, 1.0):
      settings[f'beam{beam}_lp{alpha:g}'] = {'eval.beam_size': beam,
                                             'eval.alpha': alpha}
  for overrides in settings.values():
    overrides['eval.extra_splits'] = ''  # Validation and test2016 only.
  return {
      'base': 'configs/multi30k.py:cpu',
      'grid': {'recipe': {}},
      'seeds': [0, 1, 2],
      'metrics': _METRICS,
      'eval_settings': settings,
      'out': 'experiments/multi30k_decoding',
  }
