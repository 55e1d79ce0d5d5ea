"""The analysis pipeline, one module per step: decode → detect → preprocess → predict.

`analyze.py` chains the steps; pages, API and CLI all call it.
"""
