"""Study: pre-LN vs post-LN, LayerNorm vs RMSNorm, GELU vs SwiGLU vs ReLU².

The nanoGPT CPU model; SwiGLU's MLP width is 2/3 of 4D (rounded to 344) so
its three matrices hold about as many parameters as GELU's two.

  python -m lm.study experiments/norm_and_activation.py
"""


def get_study():
  return {
      'base': 'configs/shakespeare_char.py:cpu',
      'grid': {'pre_ln_gelu': {},
               'post_ln_gelu': {'model.norm_position': 'post'},
               'pre_rms_gelu': {'model.norm': 'rmsnorm'},
               'pre_ln_swiglu': {'model.activation': 'swiglu',
                                 'model.mlp_dim': 344},
               'pre_ln_relu2': {'model.activation': 'relu2'}},
      'seeds': [0, 1, 2],
      'metrics': ['validation.loss', 'train.tokens_per_sec'],
      'out': 'experiments/norm_and_activation',
  }
