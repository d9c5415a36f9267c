"""`taming app`: interactive sampling from a trained transformer, the top layer (nothing else imports it).

    launch.py   its own command line and Streamlit's safe settings (`taming app` execs into Streamlit)
    uploads.py  uploaded label maps and images, with size limits
    layouts.py  scene models: a validation example's object boxes drawn beside it
    page.py     the Streamlit page: widgets only, over taming.generation (runs, conditioning, drawing,
                pictures), which works without Streamlit
"""
