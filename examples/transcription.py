"""Transcription, offline: an audio file to text, plain and verbose.

The deterministic provider "transcribes" in-process (its text names the
file); a real ``audio_transcription`` model is called the same way. Run it
with ``python examples/transcription.py``.
"""

from __future__ import annotations

import io
import wave

import palyra

CONFIG = {
    "providers": [{"id": "local", "kind": "deterministic"}],
    "models": [{"id": "ears", "provider": "local", "role": "audio_transcription"}],
}


def silence(seconds: float = 0.5) -> bytes:
    """A short WAV file of silence."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * int(8000 * seconds))
    return out.getvalue()


def main() -> None:
    with palyra.Palyra(CONFIG, ledger=palyra.MemoryLedger()) as client:
        audio = ("meeting.wav", silence())
        plain = client.transcribe(audio, model="ears")
        print("text:", plain.text)
        verbose = client.transcribe(audio, model="ears", response_format="verbose_json")
        print("segments:", len(verbose.segments or []), "language:", verbose.language)


if __name__ == "__main__":
    main()
