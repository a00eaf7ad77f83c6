"""Cross-modal hashing retrieval (METHOD.md section 3): LabNet / ImgNet / TxtNet with
discriminators (SSAH) and the DCMH baseline, Hamming search, MAP evaluation.

Plain Python/PyTorch; no Django imports."""
