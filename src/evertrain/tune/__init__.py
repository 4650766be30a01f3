"""evertrain.tune: tuning in the loop (PBT on Ray Tune, laws in the loop).

Composes the other rooms through their public APIs: each member is an ordinary
:func:`evertrain.train.run` in its own run folder, its hyper-parameters applied to the
:class:`~evertrain.train.TrainConfig` with the schedule algebra (``scale``) and ``data.mixture``.

- ``pbt``: the Ray-free parts of Population Based Training (inputs, explore, exploit = adopt a
  donor's checkpoint bundle, the winner's realised schedule and mixture, the results);
- ``ray_pbt``: the Ray Tune trainable and :func:`~evertrain.tune.ray_pbt.run_pbt` (needs the
  ``evertrain[tune]`` extra, imported only when called);
- ``suggest``: the multi-power law fitted on a constant-LR main run and its decay branches picks
  the decay of every budget (``evertrain schedule suggest``, ``evertrain continual branches
  --auto``; both import it inside the command);
- ``cli``: ``evertrain tune pbt``.
"""
