"""emorepro: regenerate and audit speech-emotion-recognition results on IEMOCAP.

Importing the package is cheap on purpose: it imports neither torch nor transformers.
Every heavy dependency is imported inside the function that needs it, because the DAG
has hundreds of short jobs and each pays its own start-up.
"""
__version__ = "0.1.0"
