"""`mmad-edge tune`'s runtime half: the candidates a folder offers here, the pick among the measured
ones, and the ``tuned.json`` choice that ``Detector.load(folder)`` follows with ``auto``.

Torch-free like the rest of the runtime; the measuring (images, timing, verification against FP32)
is done by ``mmad_edge.app.tuning`` on top of the other rooms.
"""
