"""Helpers for tests and scripts against a local ``orgplane all`` whose mail goes to files
(``--*-mail-url file://DIR``): read the links Orgplane mails (verification, invites, password
resets) without a mail server."""

from __future__ import annotations

import pathlib
import re
import time
from typing import Union


def mailed(mail_dir: Union[str, pathlib.Path], to: str, pattern: str, timeout: float = 15.0) -> str:
    """The first group of ``pattern`` in the newest ``.eml`` file of ``mail_dir`` addressed to
    ``to``, waiting up to ``timeout`` seconds for it to arrive; AssertionError when none does."""
    mail_dir = pathlib.Path(mail_dir)
    deadline = time.time() + timeout
    while time.time() < deadline:
        mails = sorted(mail_dir.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in mails:
            text = path.read_text(errors="replace")
            if re.search(rf"^To: .*{re.escape(to)}", text, re.M):
                m = re.search(pattern, text)
                if m:
                    return m.group(1)
        time.sleep(0.1)
    raise AssertionError(f"no mail to {to} matching {pattern} in {mail_dir}")
