"""Study: multi-head vs grouped-query vs multi-query attention.

The nanoGPT CPU model (4 heads of 32) with 4, 2 and 1 key/value heads. Fewer
KV heads remove attention parameters; the MLP is widened to give them back
(equal parameter budget): GQA-2 loses D^2 = 16,384 per layer (+64 MLP
width), MQA 1.5 D^2 (+96).

  python -m lm.study experiments/attention_heads.py
"""


def get_study():
  return {
      'base': 'configs/shakespeare_char.py:cpu',
      'grid': {'mha': {'model.num_kv_heads': 0},
               'gqa2': {'model.num_kv_heads': 2, 'model.mlp_dim': 576},
               'mqa': {'model.num_kv_heads': 1, 'model.mlp_dim': 608}},
      'seeds': [0, 1, 2],
      'metrics': ['validation.loss', 'train.tokens_per_sec',
                  'model.kv_cache_bytes_per_token'],
      'out': 'experiments/attention_heads',
  }
