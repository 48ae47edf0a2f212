"""The capture options as command-line options, shared by `snapshotd capture` and `snapshotd
render-url` so that both spell and explain them alike. Each is an `Annotated` type that a command
gives its own default: `capture` the value it captures with, `render-url` None, which leaves the
option out of the link and the server's default in force.
"""

from __future__ import annotations

from typing import Annotated

import typer

Width = Annotated[int | None, typer.Option(help="Viewport width in CSS pixels.")]
Height = Annotated[int | None, typer.Option(help="Viewport height in CSS pixels.")]
FullPage = Annotated[bool, typer.Option("--full-page", help="Capture the whole page.")]
Selector = Annotated[str | None, typer.Option(help="Capture one element.")]
Device = Annotated[str | None, typer.Option(help='Emulate a device, e.g. "iPhone 13".')]
WaitUntil = Annotated[
    str | None, typer.Option(help="What to wait for: load, domcontentloaded or networkidle.")
]
DelayMs = Annotated[int | None, typer.Option(help="Milliseconds to wait after the page is ready.")]
TimeoutMs = Annotated[int | None, typer.Option(help="Milliseconds before the capture gives up.")]
BlockAds = Annotated[bool, typer.Option(help="Block ads (EasyList).")]
BlockTrackers = Annotated[bool, typer.Option(help="Block trackers (EasyPrivacy).")]
Consent = Annotated[str | None, typer.Option(help="Cookie banners: accept, reject or hide.")]
ScrollLazy = Annotated[
    bool | None,
    typer.Option(
        "--scroll-lazy/--no-scroll-lazy",
        help="Scroll through the page to load lazy content (by default with --full-page).",
        show_default=False,
    ),
]
FreezeAnimations = Annotated[
    bool, typer.Option(help="Stop animations and videos for a stable picture.")
]
ReducedMotion = Annotated[bool, typer.Option(help="Ask for reduced motion.")]
ForcedColors = Annotated[bool, typer.Option(help="Emulate forced colours.")]
Media = Annotated[str | None, typer.Option(help="CSS media: screen or print.")]
ColorScheme = Annotated[str | None, typer.Option(help="light, dark or no-preference.")]
Timezone = Annotated[str | None, typer.Option(help='IANA time zone, e.g. "Asia/Tokyo".')]
Locale = Annotated[str | None, typer.Option(help='BCP 47 locale, e.g. "fr-FR".')]
Geolocation = Annotated[
    str | None, typer.Option(help='"latitude,longitude[,accuracy]", granted to the page.')
]
FailOnStatus = Annotated[
    str | None, typer.Option(help='Fail on these HTTP statuses, e.g. "404,500-599".')
]
UserAgent = Annotated[str | None, typer.Option(help="Send this User-Agent instead.")]
