"""soundalike: a raw-audio neural music synthesizer (SampleRNN / WaveNet)."""

__version__ = "0.1.0"
