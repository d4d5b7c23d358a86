"""A private Xvfb for the whole test session (import the fixture into a test module).

pyautogui binds to one display per process, so the display must outlive every module that
uses it: a module-scoped one would leave later desktop tests without a display.
"""

import pytest


@pytest.fixture(scope="session")
def desktop_display():
    from cairn.envs.desktop import virtual_display

    with virtual_display() as name:
        yield name
