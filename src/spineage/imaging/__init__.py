"""Imaging: loading (NIfTI, DICOM, PNG), orientation, inspection, masking, preprocessing, segmentation.

- :mod:`spineage.imaging.io`: scans as canonical RAS :class:`~spineage.imaging.io.Volume` s and
  radiographs as :class:`~spineage.imaging.io.Image2D`; one-line ``ImageLoadError`` for bad input.
- :mod:`spineage.imaging.deid`: the allow-list of DICOM fields that may leave a header.
- :mod:`spineage.imaging.inspect`: what ``spineage inspect`` reports about a scan.
- :mod:`spineage.imaging.masking`: the spine mask of a label map (whole or one region), dilated in mm.
- :mod:`spineage.imaging.resample`: the output grid centred on the mask, and resampling onto it.
- :mod:`spineage.imaging.intensity`: robust normalisation inside the mask, and its checks.
- :mod:`spineage.imaging.preprocess`: one scan to the model's array with a record and quality flags.
- :mod:`spineage.imaging.stage`: ``spineage preprocess``, the whole cohort, incremental.
"""
