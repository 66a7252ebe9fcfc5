<?xml version="1.0" encoding="UTF-8"?>
<!-- Missed-call mail, English.  Input: the <missedCall> document built by
     appliance.missed.render.notice_document.  Runs without file or network
     access: xsl:include, xsl:import, document() and entities are refused. -->
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="html" encoding="UTF-8" indent="yes"/>

  <xsl:template match="/missedCall">
    <html>
      <head><title>Missed call</title></head>
      <body style="font-family: sans-serif">
        <h1>Missed call</h1>
        <table>
          <tr><th align="left">From</th><td><xsl:apply-templates select="caller"/></td></tr>
          <tr><th align="left">Number</th><td><xsl:apply-templates select="caller/number"/></td></tr>
          <xsl:if test="caller/contact/organization != ''">
            <tr><th align="left">Company</th><td><xsl:value-of select="caller/contact/organization"/></td></tr>
          </xsl:if>
          <xsl:if test="caller/contact/email != ''">
            <tr><th align="left">E-mail</th><td><xsl:value-of select="caller/contact/email"/></td></tr>
          </xsl:if>
          <tr><th align="left">For</th><td><xsl:value-of select="called/name"/> (<xsl:value-of select="called/extension"/>)</td></tr>
          <tr><th align="left">When</th><td><xsl:value-of select="time/@date"/>, <xsl:value-of select="time/@clock"/></td></tr>
          <tr><th align="left">Rang</th><td><xsl:value-of select="ringSeconds"/> seconds</td></tr>
          <xsl:if test="answeredBy">
            <tr><th align="left">Answered by</th><td><xsl:value-of select="answeredBy"/></td></tr>
          </xsl:if>
        </table>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="caller">
    <xsl:choose>
      <xsl:when test="contact/name != ''"><xsl:value-of select="contact/name"/></xsl:when>
      <xsl:when test="name != ''"><xsl:value-of select="name"/></xsl:when>
      <xsl:when test="@suppressed = 'true'">Number withheld</xsl:when>
      <xsl:otherwise><xsl:value-of select="number"/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>

  <xsl:template match="number">
    <xsl:choose>
      <xsl:when test="../link"><a href="{../link}"><xsl:value-of select="."/></a></xsl:when>
      <xsl:when test=". = ''">withheld</xsl:when>
      <xsl:otherwise><xsl:value-of select="."/></xsl:otherwise>
    </xsl:choose>
  </xsl:template>
</xsl:stylesheet>
