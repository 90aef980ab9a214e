"""Classical (non-learned) labels used as training targets where no manual labels exist:
``lung_ct`` labels the patient's right and left lung on chest CT, ``montage`` draws overlay
montages to check them by eye, ``lung_ct_data`` builds the training set of the bundled
``lung-ct`` model (``python -m Training build-lung-ct-data``)."""

from Training.pseudolabels.lung_ct import LEFT_LUNG, RIGHT_LUNG, LungLabels, label_lungs

__all__ = ["LEFT_LUNG", "RIGHT_LUNG", "LungLabels", "label_lungs"]
