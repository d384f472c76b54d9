"""What every package shares, at the bottom of the import order: the project's errors and its
text analysis (words, folding, stemming, stop words, names, numbers, language, sentences,
citation marks). It imports nothing of the project."""
