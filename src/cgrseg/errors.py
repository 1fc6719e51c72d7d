"""The domain's one expected-failure type.

Every layer (data, models, runner, measure, tables) raises ``CGRSegError`` for bad input or an
unusable environment; its message names the file and the problem. Only the command line
(``cgrseg.cli``) turns it into ``cgrseg <cmd>: error: <message>`` and exit code 2.
"""


class CGRSegError(Exception):
    """An expected failure, reported as one line naming the file and the problem."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (``cgrseg.cli`` raises it from its signal handlers; exit 128 +
    signal). A KeyboardInterrupt, so that ``except Exception`` lets it through and every
    ``finally`` (atomic_path, atomic_dir) removes its temporaries on the way out."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
