"""What an entry was allowed to use. Entries are ranked only against entries of their own protocol.

- zero-shot: no training images; the method is never fitted.
- few-shot: fitted on a few-shot split (k images per class) of the suite's pool.
- test-time: no training images, but the method adapts its state over the stream of test images.

Flags say what else an entry drew on: extra training data beyond the split, or a language model.
"""

ZERO_SHOT, FEW_SHOT, TEST_TIME = "zero-shot", "few-shot", "test-time"
PROTOCOLS = (ZERO_SHOT, FEW_SHOT, TEST_TIME)
EXTRA_DATA, LANGUAGE_MODEL = "extra-data", "language-model"
USES = (EXTRA_DATA, LANGUAGE_MODEL)
