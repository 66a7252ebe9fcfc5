from setuptools import find_namespace_packages, setup

setup(
    name="appliance",
    version="0.1.0",
    description="Telephony appliance beside Asterisk: callback, missed-call mail, forwarding",
    # Every subpackage, also new ones (even before they get an __init__.py).
    packages=[
        *find_namespace_packages(include=["appliance", "appliance.*"], exclude=["*__pycache__"]),
        "twisted.plugins",
    ],
    package_data={"appliance.lab": ["templates/*"]},
    python_requires=">=3.11",
    install_requires=[
        "twisted>=24.7",
        "klein>=24.8",
        "jinja2>=3.1",
        "lxml>=5",
        "vobject>=0.9.7",
        "treq>=24.9",
        "zope.interface>=6",
        "automat>=24.8",
        "attrs>=23",
        "argon2-cffi>=23.1",
        "prometheus_client>=0.20",
        "icalendar>=6",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "hypothesis>=6",
            "aiosmtpd>=1.4",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "ruff>=0.5",
            "playwright>=1.45",
        ],
    },
)
