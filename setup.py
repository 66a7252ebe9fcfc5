from setuptools import find_namespace_packages, setup

setup(
    name="appliance",
    version="0.1.0",
    description="Telephony appliance beside Asterisk: callback, missed-call mail, forwarding",
    # Every subpackage, also new ones (even before they get an __init__.py).
    packages=[
        *find_namespace_packages(
            include=["appliance", "appliance.*"],
            exclude=[
                "*__pycache__",
                "appliance.web.templates",
                "appliance.web.static",
                "appliance.missed.xsl",
            ],
        ),
        "twisted.plugins",
    ],
    # Read at run time with importlib.resources (appliance/shipped.py).
    package_data={
        "appliance.web": ["templates/*.html", "static/*"],
        "appliance.missed": ["xsl/*.xsl"],
    },
    license="MIT",
    python_requires=">=3.11",
    # What the code imports (twisted[tls]: STARTTLS to the mail relay).
    install_requires=[
        "twisted[tls]>=24.7",
        "klein>=24.8",
        "werkzeug>=3",
        "jinja2>=3.1",
        "lxml>=5",
        "vobject>=0.9.7",
        "zope.interface>=6",
        "automat>=24.8",
        "argon2-cffi>=23.1",
        "phonenumbers>=8.13",
        "ldap3>=2.9",
        "treq>=24.9",  # CardDAV address books
        "prometheus_client>=0.20",
        "icalendar>=6",
        "python-dateutil>=2.8",  # recurring holidays (RRULE)
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "aiosmtpd>=1.4",
            "radicale>=3.2",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "ruff>=0.5",
            "playwright>=1.45",
        ],
    },
)
