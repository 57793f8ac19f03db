"""Streamlit helpers shared by the pages (cached loaders, pickers). Pages import this; core never does."""
