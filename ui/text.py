"""Text from runs, datasets and uploads, made safe to put where Streamlit renders Markdown.

st.markdown, st.caption, st.error/warning/info/success, st.subheader, tab and expander labels all read their text
as Markdown: a file name like ``![x](http://host/a.png)`` would make the browser fetch that image. Only st.text,
st.code, dataframes and chart text are shown literally.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")  # CommonMark escapes any ASCII punctuation
_LINE_BREAKS = re.compile(r"\s*[\r\n\f\v\u2028\u2029]+\s*")  # a new line could start a heading, list or code block


def escape_markdown(text: object) -> str:
    """`text` as Markdown that renders as exactly these characters, on one line: no links, images, HTML or styling."""
    return _PUNCTUATION.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))
