"""The reader: reads a question with a passage window and returns the answer span, or says the window holds none.

``inputs`` cuts passages into windows and encodes question-window pairs, ``model`` is the network
(multilingual-e5-small with trained top layers and a span head), ``reader`` loads the shipped
weights and reads, ``data`` and ``train`` make the training set from PIAF and train it
(``rag train reader``). Torch is imported only when a reader is loaded.
"""
