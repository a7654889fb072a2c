"""The auditor: judge past communications, produce findings and reports."""
